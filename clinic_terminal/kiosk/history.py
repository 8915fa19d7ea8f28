"""The drug and checkup histories as the staff screen shows them.

Checkups in the terms and order of the 特定健診 result form (身体計測, 血圧, 脂質, 肝機能, 血糖, 尿),
with units, the reference range and each value marked against the two thresholds of the standard
programme (標準的な健診・保健指導プログラム 令和6年度版): 保健指導判定値 and 受診勧奨判定値
(docs/kiosk.md cites the source). Drug history with the dispensing facility's name where this
terminal knows it, else what its 10-digit code says (都道府県 and 医科 / 歯科 / 薬局), and the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from schemas.card import Checkups, Medications
from schemas.me import MyCheckups, MyMedications

Flag = Literal["guidance", "referral"]


@dataclass(frozen=True)
class CheckupTerm:
    key: str
    group: str
    label: str
    unit: str
    guidance: float | None = None  # 保健指導判定値 (a value at or past it is marked)
    referral: float | None = None  # 受診勧奨判定値
    low_is_bad: bool = False  # HDL: the thresholds are upper bounds ("39 以下")
    decimals: int = 0


#: the result form's items in its order; 腹囲's threshold depends on sex (男性 85, 女性 90 cm)
CHECKUP_TERMS: Final[tuple[CheckupTerm, ...]] = (
    CheckupTerm("height_cm", "身体計測", "身長", "cm", decimals=1),
    CheckupTerm("weight_kg", "身体計測", "体重", "kg", decimals=1),
    CheckupTerm("waist_cm", "身体計測", "腹囲", "cm", decimals=1),
    CheckupTerm("bmi", "身体計測", "BMI", "kg/m²", guidance=25, decimals=1),
    CheckupTerm("systolic", "血圧", "収縮期血圧", "mmHg", guidance=130, referral=140),
    CheckupTerm("diastolic", "血圧", "拡張期血圧", "mmHg", guidance=85, referral=90),
    CheckupTerm("triglycerides", "脂質", "中性脂肪（空腹時）", "mg/dL", guidance=150, referral=300),
    CheckupTerm("hdl", "脂質", "HDLコレステロール", "mg/dL", guidance=39, low_is_bad=True),
    CheckupTerm("ldl", "脂質", "LDLコレステロール", "mg/dL", guidance=120, referral=140),
    CheckupTerm("ast", "肝機能", "AST（GOT）", "U/L", guidance=31, referral=51),
    CheckupTerm("alt", "肝機能", "ALT（GPT）", "U/L", guidance=31, referral=51),
    CheckupTerm("ggt", "肝機能", "γ-GT（γ-GTP）", "U/L", guidance=51, referral=101),
    CheckupTerm("fasting_glucose", "血糖", "空腹時血糖", "mg/dL", guidance=100, referral=126),
    CheckupTerm("hba1c", "血糖", "HbA1c（NGSP値）", "%", guidance=5.6, referral=6.5, decimals=1),
)
WAIST_GUIDANCE: Final = {"男": 85.0, "女": 90.0}
#: the file's 尿蛋白 codes as the result form writes them (a bare "-" reads as "no value")
URINE_PROTEIN: Final = {"-": "（−）", "±": "（±）", "+": "（+）", "1+": "（+）", "2+": "（2+）", "3+": "（3+）",
                        "4+": "（4+）"}
URINE_FLAG: Final[dict[str, Flag]] = {"±": "guidance", "+": "referral", "1+": "referral", "2+": "referral",
                                      "3+": "referral", "4+": "referral"}
FLAG_LABEL: Final = {"guidance": "保健指導判定値", "referral": "受診勧奨判定値"}


def _num(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if decimals else f"{value:g}"


def _guidance(term: CheckupTerm, sex: str | None) -> float | None:
    if term.key == "waist_cm":
        return WAIST_GUIDANCE.get(sex or "")
    return term.guidance


def reference_text(term: CheckupTerm, sex: str | None) -> str:
    """The reference range (基準範囲): below the 保健指導判定値 (HDL: above it)."""
    if term.key == "waist_cm":
        limit = WAIST_GUIDANCE.get(sex or "")
        return f"{limit:g} 未満" if limit is not None else "男性 85 未満・女性 90 未満"
    if term.guidance is None:
        return ""
    if term.low_is_bad:
        return f"{term.guidance + 1:g} 以上"
    return f"{_num(term.guidance, term.decimals)} 未満"


def flag_of(term: CheckupTerm, value: float, sex: str | None) -> Flag | None:
    guidance = _guidance(term, sex)
    if term.low_is_bad:
        if term.referral is not None and value <= term.referral:
            return "referral"
        return "guidance" if guidance is not None and value <= guidance else None
    if term.referral is not None and value >= term.referral:
        return "referral"
    return "guidance" if guidance is not None and value >= guidance else None


def _thresholds(term: CheckupTerm, sex: str | None) -> str:
    guidance = _guidance(term, sex)
    sign = "以下" if term.low_is_bad else "以上"
    parts = []
    if guidance is not None:
        parts.append(f"保健指導判定値 {_num(guidance, term.decimals)} {sign}")
    if term.referral is not None:
        parts.append(f"受診勧奨判定値 {_num(term.referral, term.decimals)} {sign}")
    return "・".join(parts)


def checkups_json(checkups: Checkups | MyCheckups, sex: str | None) -> dict[str, Any]:
    """Items as rows, checkup dates as columns (newest first), like the result form. The staff
    screen (a visit's checkups) and the patient's own screen (``/v1/me/checkups``) both."""
    items = sorted(checkups.items, key=lambda c: c.checked_on, reverse=True)
    rows: list[dict[str, Any]] = []
    for term in CHECKUP_TERMS:
        if not any(term.key in c.results for c in items):
            continue
        values: list[dict[str, Any]] = []
        for c in items:
            value = c.results.get(term.key)
            if value is None:
                values.append({"text": "", "flag": None})
                continue
            flag = flag_of(term, value, sex)
            values.append({"text": _num(value, term.decimals), "flag": flag,
                           "flag_label": FLAG_LABEL[flag] if flag else None})
        rows.append({"key": term.key, "group": term.group, "label": term.label, "unit": term.unit,
                     "reference": reference_text(term, sex), "thresholds": _thresholds(term, sex), "values": values})
    if any(c.urine_protein for c in items):
        urine = []
        for c in items:
            code = c.urine_protein or ""
            flag = URINE_FLAG.get(code)
            urine.append({"text": URINE_PROTEIN.get(code, code), "flag": flag,
                          "flag_label": FLAG_LABEL[flag] if flag else None})
        rows.append({"key": "urine_protein", "group": "尿", "label": "尿蛋白", "unit": "", "reference": "（−）",
                     "thresholds": "保健指導判定値 （±）・受診勧奨判定値 （+）以上", "values": urine})
    return {"visit_id": getattr(checkups, "visit_id", None), "since": checkups.since.isoformat(),
            "dates": [c.checked_on.isoformat() for c in items], "rows": rows}


# --- drug history: the dispensing facility -------------------------------------------------------

PREFECTURES: Final = (
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県", "群馬県",
    "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県", "福井県", "山梨県", "長野県",
    "岐阜県", "静岡県", "愛知県", "三重県", "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県",
    "鳥取県", "島根県", "岡山県", "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県",
    "佐賀県", "長崎県", "熊本県", "大分県", "宮崎県", "鹿児島県", "沖縄県",
)
#: the third digit of a 医療機関コード: the fee schedule (点数表) it bills under
FACILITY_KIND: Final = {"1": "医科の医療機関", "3": "歯科の医療機関", "4": "薬局"}


def facility_description(code: str) -> str | None:
    """What a 10-digit 医療機関コード says by itself: 「東京都の薬局」 (None when it is not one)."""
    if len(code) != 10 or not code.isdigit():
        return None
    pref = int(code[:2])
    kind = FACILITY_KIND.get(code[2])
    if not 1 <= pref <= len(PREFECTURES) or kind is None:
        return None
    return f"{PREFECTURES[pref - 1]}の{kind}"


def medications_json(medications: Medications | MyMedications, facility_names: Mapping[str, str]) -> dict[str, Any]:
    """The server's items (facility code only) with the facility's name where this terminal knows
    it; the code always comes along as secondary text."""
    items = []
    for m in sorted(medications.items, key=lambda i: i.dispensed_on, reverse=True):
        name = facility_names.get(m.facility_code)
        items.append(m.model_dump(mode="json") | {
            "facility_name": name,
            "facility_description": None if name else facility_description(m.facility_code),
        })
    return {"visit_id": getattr(medications, "visit_id", None), "since": medications.since.isoformat(), "items": items}
