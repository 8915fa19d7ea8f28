"""What ``hokensha-load`` says, in Japanese (the default) or English (``--lang en`` /
``SHIKAKU_LANG=en``).

The stable codes (``overlap``, ``invalid_date``, ``my_number_detected``…) never change with the
language: a batch job greps the code, a person reads the message. Row messages are rendered from
the code and the field (the server's English text is kept for English and as the fallback of an
unknown code); a message never carries a value, only the field and the rule.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from schemas.insurer_files import OUTSIDE_JIS_X0208, RowError

Lang = Literal["ja", "en"]
LANGS: tuple[str, ...] = get_args(Lang)
DEFAULT_LANG: Lang = "ja"


def lang_of(value: str | None) -> Lang:
    """``ja`` / ``en`` (``ja_JP.UTF-8``, ``EN`` accepted); anything else is the default."""
    head = (value or "").strip().lower()[:2]
    return "en" if head == "en" else "ja" if head == "ja" else DEFAULT_LANG


# the file's columns as the insurer's staff call them (the column name follows in the message)
FIELD_LABELS: dict[str, str] = {
    "action": "処理区分",
    "insurer_number": "保険者番号",
    "symbol": "記号",
    "number": "番号",
    "branch": "枝番",
    "name": "氏名",
    "name_kana": "氏名カナ",
    "sex": "性別",
    "birth_date": "生年月日",
    "address": "住所",
    "post_number": "郵便番号",
    "personal_family": "本人・家族の別",
    "card_classification": "証区分",
    "valid_from": "資格取得日（有効開始日）",
    "valid_to": "資格喪失日（有効終了日）",
    "copay_ratio": "一部負担金の割合",
    "reason_of_loss": "資格喪失事由",
    "elderly_ratio": "高齢受給者の負担割合",
    "elderly_valid_from": "高齢受給者証の有効開始日",
    "elderly_valid_to": "高齢受給者証の有効終了日",
    "limit_kind": "限度額適用の種別",
    "limit_class": "限度額適用の区分",
    "limit_valid_from": "限度額適用の有効開始日",
    "limit_valid_to": "限度額適用の有効終了日",
    "disease_category": "特定疾病の区分",
    "disease_valid_from": "特定疾病の有効開始日",
    "disease_valid_to": "特定疾病の有効終了日",
    "disease_self_pay": "特定疾病の自己負担限度額",
    "dispensed_on": "調剤日",
    "facility_code": "医療機関等コード",
    "drug_code": "医薬品コード",
    "drug_name": "医薬品名",
    "quantity": "数量",
    "unit": "単位",
    "days": "日数",
    "checked_on": "健診実施日",
    "height_cm": "身長",
    "weight_kg": "体重",
    "waist_cm": "腹囲",
    "bmi": "BMI",
    "systolic": "収縮期血圧",
    "diastolic": "拡張期血圧",
    "hba1c": "HbA1c",
    "ldl": "LDLコレステロール",
    "hdl": "HDLコレステロール",
    "triglycerides": "中性脂肪",
    "ast": "AST（GOT）",
    "alt": "ALT（GPT）",
    "ggt": "γ-GT（γ-GTP）",
    "fasting_glucose": "空腹時血糖",
    "urine_protein": "尿蛋白",
    "service_month": "診療年月",
    "facility_name": "医療機関等名称",
    "care_kind": "診療区分",
    "total_cost": "医療費の総額",
    "patient_paid": "窓口負担相当額",
    "office_code": "福祉事務所コード",
    "payer_number": "公費負担者番号",
    "recipient_number": "受給者番号",
    "month": "対象年月",
    "ticket_kind": "券種別（医療券・調剤券）",
    "self_pay": "本人支払額",
    "monthly_cap": "自己負担上限額",
    "performed_on": "診療日",
    "procedure_code": "診療行為コード",
    "procedure_name": "診療行為名称",
    "kind": "診療・手術の別",
    "inpatient": "入院・外来の別",
}

# code -> Japanese message; {field} is 「label（column）」 or 「この行」
_ROW_JA: dict[str, str] = {
    "required": "{field}が入力されていません",
    "too_long": "{field}が長すぎます{detail}",
    "invalid_date": "{field}が日付ではありません（YYYY-MM-DD または YYYYMMDD）",
    "invalid_month": "{field}が年月ではありません（YYYY-MM）",
    "check_digit": "{field}の検査数字（チェックディジット）が合いません",
    "exceeds_total": "{field}が医療費の総額（total_cost）を超えています",
    "invalid_code": "{field}が決められた値ではありません{detail}",
    "invalid_number": "{field}が数値ではありません",
    "out_of_range": "{field}が範囲外です{detail}",
    "invalid_format": "{field}の形式が正しくありません",
    "invalid_character": "{field}に保存できない文字（NUL 文字など）が含まれています",
    "my_number_detected": "{field}に個人番号（マイナンバー）と思われる12桁の数字があります。個人番号は受け付けません",
    "date_order": "{field}が開始日より前です",
    "malformed_csv": (
        "CSV の形式が正しくありません（閉じていない「\"」など）。この行だけを不備とし、次の行から読み直しました"
    ),
    "malformed_json": "JSON の形式が正しくありません（1行に1つのオブジェクト）",
    "column_count": "列の数がヘッダーと合いません",
    "line_too_long": "行が長すぎます（65,536 文字まで）",
    "encoding": "文字コードが正しくありません（UTF-8 または Shift_JIS（CP932））",
    "overlap": "この方の資格期間がすでにある期間と重なります（変更は処理区分 change、または先に loss）",
    "not_found": "この方の該当する資格期間が登録されていません（change・loss は登録済みの期間が必要です）",
    "unknown_person": "この方の資格が登録されていません（先に資格ファイルで登録してください）",
    "insurer_not_permitted": "この保険者番号のデータは、このトークンでは登録できません",
}

# whole-file refusals (local FileFormatError or the server's problem code)
_REFUSED_JA: dict[str, str] = {
    "empty_file": "ファイルが空です（ヘッダー行がありません）",
    "missing_column": "必要な列がありません",
    "duplicate_column": "同じ列が2回以上あります",
    "unknown_column": "知らない列があります",
    "my_number_detected": "個人番号（マイナンバー）の列があります。個人番号は送信しません",
    "encoding": "ヘッダー行の文字コードが正しくありません（UTF-8 または Shift_JIS（CP932））",
    "line_too_long": "ヘッダー行が長すぎます",
    "payload_too_large": "ファイルが大きすぎます（サーバーの上限を超えています）",
    "validation_error": "ファイルの種類・形式がサーバーに受け付けられませんでした",
    "digest_mismatch": "送信中にファイルが変わりました（SHA-256 が一致しません）。もう一度送ってください",
}


def field_label(name: str | None, lang: Lang) -> str:
    if name is None:
        return "この行" if lang == "ja" else "the line"
    if lang == "en":
        return name
    label = FIELD_LABELS.get(name)
    return f"{label}（{name}）" if label else f"項目 {name}"


_PAREN = re.compile(r"\(([^()]*)\)\s*$")
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"


def _detail(code: str, english: str) -> str:
    """The rule's figure from the English message (a range, a length, the allowed codes)."""
    if code == "out_of_range":
        found = _PAREN.search(english)
        text = found.group(1) if found else ""
        if m := re.fullmatch(rf"({_NUMBER}) to ({_NUMBER})", text):
            return f"（{m.group(1)}〜{m.group(2)}）"
        if m := re.fullmatch(rf"at least ({_NUMBER})", text):
            return f"（{m.group(1)} 以上）"
        if m := re.fullmatch(rf"at most ({_NUMBER})", text):
            return f"（{m.group(1)} 以下）"
        return ""
    if code == "too_long":
        m = re.search(r"longer than ([0-9]+) characters", english)
        return f"（{m.group(1)} 文字まで）" if m else ""
    if code == "invalid_code":
        m = re.search(r"(?:one of|must be) ([0-9A-Za-z_ ,]+?)(?: \(percent\))?$", english)
        return f"（{m.group(1).replace(' or ', ', ')} のいずれか）" if m else ""
    return ""


def row_message(error: RowError, lang: Lang) -> str:
    """The message of one rejected row in ``lang`` (the code and the line stay as they are)."""
    if lang == "en" or error.code == OUTSIDE_JIS_X0208:  # that warning's message is Japanese already
        return error.message
    template = _ROW_JA.get(error.code)
    if template is None:
        return f"{field_label(error.field, lang)}に不備があります（{error.code}）"
    return template.format(field=field_label(error.field, lang), detail=_detail(error.code, error.message))


def refused_message(code: str | None, english: str, lang: Lang) -> str:
    """Why the whole file was refused, in ``lang``."""
    if lang == "en" or code is None or code not in _REFUSED_JA:
        return english
    return _REFUSED_JA[code]


# the loader's own words: key -> (ja, en); str.format fields in braces
_TEXT: dict[str, tuple[str, str]] = {
    "error_prefix": ("hokensha-load: エラー: ", "hokensha-load: error: "),
    "interrupted": ("hokensha-load: 中断しました", "hokensha-load: interrupted"),
    "unexpected": (
        "hokensha-load: 予期しないエラーです（--verbose を付けて再実行すると詳細が出ます）",
        "hokensha-load: unexpected error (rerun with --verbose for details)",
    ),
    "quiet_verbose": ("--quiet と --verbose は同時に指定できません", "--quiet and --verbose exclude each other"),
    "no_token": (
        "アップロード用トークンがありません:"
        " --token を指定するか SHIKAKU_INSURER_TOKEN を設定してください",
        "no upload token: pass --token or set SHIKAKU_INSURER_TOKEN",
    ),
    "unknown_format": (
        "{name} の形式が拡張子から分かりません: --format csv|ndjson を指定してください",
        "cannot tell the format of {name!r} from its extension: use --format csv|ndjson",
    ),
    "cannot_read": ("{path} を読めません: {reason}", "cannot read {path}: {reason}"),
    "file_refused": ("ファイル全体を受け付けませんでした{where}: {reason}", "file refused{where}: {reason}"),
    "server_refused": (
        "サーバーがファイル全体を受け付けませんでした{where}: {reason}",
        "the server refused the file{where}: {reason}",
    ),
    "where_line": ("（{line}行目）", " (line {line})"),
    "timeout": (
        "{url} のサーバーが時間内に応答しませんでした（{reason}）。取り込まれたかは不明です",
        "the server at {url} did not answer in time ({reason})",
    ),
    "unreachable": ("{url} のサーバーに接続できません: {reason}", "cannot reach the server at {url}: {reason}"),
    "token_refused": ("サーバーがトークンを受け付けませんでした: {reason}", "the server refused the token: {reason}"),
    "token_forbidden": (
        "このトークンではこのファイルを送れません: {reason}", "this token may not upload that: {reason}"
    ),
    "server_status": ("サーバーが {status} を返しました: {reason}", "the server answered {status}: {reason}"),
    "bad_answer": (
        "サーバーの応答がアップロード結果として読めません: {reason}",
        "the server's answer is not an upload result: {reason}",
    ),
    # the server's phases after the file is sent (progress.py)
    "server": ("サーバー", "server"),
    "phase_parsing": ("解析中（文字コード・見出し行）", "parsing (encoding, header)"),
    "phase_validating": (
        "検証中 読込 {read:,} 行、処理済み {done:,} 件（不備 {rejected:,}）",
        "validating: read {read:,} rows, {done:,} processed ({rejected:,} rejected)",
    ),
    "phase_applying": (
        "適用中 {done:,} / {total:,} 件（不備 {rejected:,}）",
        "applying: {done:,} of {total:,} processed ({rejected:,} rejected)",
    ),
    "phase_committing": ("確定中（コミット）{done:,} 件", "committing {done:,} records"),
    "phase_other": ("{phase} {done:,} 件", "{phase} {done:,}"),
    # the summary
    "checked": ("検査", "checked"),
    "loaded": ("取り込み", "loaded"),
    "accepted": ("受付 {n:,} 件", "accepted {n:,}"),
    "rejected": ("不備 {n:,} 件", "rejected {n:,}"),
    "warnings": ("警告 {n:,} 件（JIS X 0208 外の文字）", "warnings {n:,} (characters outside JIS X 0208)"),
    "unchanged": ("変更なし {n:,} 件", "unchanged {n:,}"),
    "duplicate_yes": ("同じファイルの再送: はい（何も変わっていません）", "duplicate: yes (nothing changed)"),
    "duplicate_no": ("同じファイルの再送: いいえ", "duplicate: no"),
    "rate": ("{rate:,.0f} 行/秒", "{rate:,.0f} rows/s"),
    "elapsed": ("{s:.1f} 秒", "{s:.1f} s"),
    "row_error": ("  {line}行目: {field}: {code}: {message}", "  line {line}: {field}: {code}: {message}"),
    "more_rejected": ("  ほか {n:,} 行が不備です", "  ... {n:,} more rejected row(s)"),
    "truncated": (
        "  サーバーは最初の不備だけを返しました。不備レポートにはそれだけが載っています",
        "  the server sent only the first errors; the report lists those",
    ),
    "report": ("不備レポート: {path}（{n:,} 行）", "reject report: {path} ({n:,} line(s))"),
    # the outcome: one of four, each with its own exit code
    "outcome_ok": ("結果: すべて取り込みました", "result: all loaded"),
    "outcome_ok_dry": ("結果: すべての行に不備はありません", "result: every row is valid"),
    "outcome_rejects": (
        "結果: 不備のある {n:,} 行を除いて取り込みました（不備レポートを確認してください）",
        "result: loaded except {n:,} rejected row(s) (see the reject report)",
    ),
    "outcome_rejects_dry": ("結果: {n:,} 行に不備があります", "result: {n:,} row(s) would be rejected"),
    "outcome_refused": (
        "結果: ファイル全体を受け付けませんでした（何も取り込まれていません）",
        "result: the file was refused as a whole (nothing loaded)",
    ),
    "outcome_unread": (
        "結果: 読まれていない行があります（ファイルの {records:,} 件のうち {counted:,} 件しか数えられていません）。"
        "同じファイルを再送してください",
        "result: not all lines were read (the server accounted for {counted:,} of the file's {records:,}"
        " record(s)); send the same file again",
    ),
}


def text(key: str, lang: Lang, **params: object) -> str:
    ja, en = _TEXT[key]
    return (ja if lang == "ja" else en).format(**params)
