"""Systems, extension URLs and code tables of the FHIR facade (JP Core and the project's own).

Where JP Core or a Japanese standard has an identifier or code system it is used; the project's
own codes (validity, card classification, …) live under ``urn:shikaku:`` (docs/fhir.md)."""

from __future__ import annotations

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"  # R4 (JP Core); validated with the R4B models of fhir.resources, the same shape here

# JP Core
INSURER_NUMBER_SYSTEM = "urn:oid:1.2.392.100495.20.3.61"  # 保険者番号
PUBLIC_PAYER_NUMBER_SYSTEM = "urn:oid:1.2.392.100495.20.3.71"  # 公費負担者番号
PUBLIC_RECIPIENT_NUMBER_SYSTEM = "urn:oid:1.2.392.100495.20.3.72"  # 公費受給者番号
INSURANCE_CATEGORY_SYSTEM = "urn:oid:1.2.392.100495.20.2.61"  # 保険種別 (8: 公費)
PROCEDURE_CODE_SYSTEM = "http://jpfhir.jp/fhir/core/CodeSystem/JP_ProcedureCodesMedical_CS"  # 医科診療行為マスター 9桁
FACILITY_CODE_SYSTEM = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no"  # 医療機関コード 10桁
JP_EXTENSION = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/"
SYMBOL_EXTENSION = JP_EXTENSION + "JP_Coverage_InsuredPersonSymbol"
NUMBER_EXTENSION = JP_EXTENSION + "JP_Coverage_InsuredPersonNumber"
SUBNUMBER_EXTENSION = JP_EXTENSION + "JP_Coverage_InsuredPersonSubNumber"
JP_PROFILE = "http://jpfhir.jp/fhir/core/StructureDefinition/"
NAME_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"  # IDE 漢字 / SYL カナ
DRUG_CODE_SYSTEM = "urn:oid:1.2.392.100495.20.2.74"  # レセプト電算処理システム用医薬品コード (9桁)
JLAC10_SYSTEM = "urn:oid:1.2.392.200119.4.504"  # MEDIS 臨床検査マスター JLAC10 17桁
UCUM = "http://unitsofmeasure.org"

# HL7 terminology
BENEFIT_TYPE = "http://terminology.hl7.org/CodeSystem/benefit-type"
COPAY_TYPE = "http://terminology.hl7.org/CodeSystem/coverage-copay-type"
SNOMED = "http://snomed.info/sct"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = "http://loinc.org"
ISSUE_TYPE_FOR_STATUS = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    413: "too-costly",
    422: "invalid",
    429: "throttled",
    503: "transient",
}

# the project's own
ERROR_SYSTEM = "urn:shikaku:error"
VALIDITY_EXTENSION = "urn:shikaku:fhir:extension:validity"
VALIDITY_SYSTEM = "urn:shikaku:validity"
VALIDITY_DISPLAY = {1: "有効", 2: "無効", 3: "無効（新しい資格あり）", 4: "該当資格なし", 5: "複数該当"}
CARD_CLASSIFICATION_EXTENSION = "urn:shikaku:fhir:extension:card-classification"
CARD_CLASSIFICATION_SYSTEM = "urn:shikaku:card-classification"
REASON_OF_LOSS_EXTENSION = "urn:shikaku:fhir:extension:reason-of-loss"
REASON_OF_LOSS_SYSTEM = "urn:shikaku:reason-of-loss"
PERSONAL_FAMILY_SYSTEM = "urn:shikaku:personal-family"  # 1 本人 / 2 家族
CERTIFICATE_PERIOD_EXTENSION = "urn:shikaku:fhir:extension:certificate-period"
CERTIFICATE_DATE_EXTENSION = "urn:shikaku:fhir:extension:certificate-date"
# copay / elderly / limit-certificate / specific-disease / public-expense
BENEFIT_CATEGORY_SYSTEM = "urn:shikaku:benefit-category"
LIMIT_KIND_SYSTEM = "urn:shikaku:limit-kind"
LIMIT_CLASSIFICATION_SYSTEM = "urn:shikaku:limit-classification"
DISEASE_CATEGORY_SYSTEM = "urn:shikaku:specific-disease-category"
CHECKUP_ITEM_SYSTEM = "urn:shikaku:checkup-item"  # the insurer file's column names
PROCEDURE_KIND_SYSTEM = "urn:shikaku:procedure-kind"  # 診療 / 手術, as the claims file says
PROCEDURE_CLAIM_CODE_SYSTEM = "urn:shikaku:procedure-code"  # the claims file's 9-digit 診療行為コード, as sent
INPATIENT_EXTENSION = "urn:shikaku:fhir:extension:inpatient"
ROLE_SYSTEM = "urn:shikaku:role"
ACCESS_WHAT_SYSTEM = "urn:shikaku:access-what"
QUERY_KIND_SYSTEM = "urn:shikaku:query-kind"
CONSENT_CATEGORY_SYSTEM = "urn:shikaku:consent-category"  # drug / checkup / clinical / limit_certificate
SETTING_SYSTEM = "urn:shikaku:consent-setting"

GENDER = {"1": "male", "2": "female", "3": "unknown"}

# 特定健診 items: (JLAC10 17-digit code, display, UCUM unit, unit shown). The method part of the
# code is the "その他" (99) variant where the analyte has one: the insurer files carry no method.
CHECKUP_ITEMS: dict[str, tuple[str, str, str, str]] = {
    "height_cm": ("9N001000000000001", "身長", "cm", "cm"),
    "weight_kg": ("9N006000000000001", "体重", "kg", "kg"),
    "bmi": ("9N011000000000001", "BMI", "kg/m2", "kg/m2"),
    "waist_cm": ("9N016160100000001", "腹囲（実測）", "cm", "cm"),
    "systolic": ("9A755000000000001", "収縮期血圧（その他）", "mm[Hg]", "mmHg"),
    "diastolic": ("9A765000000000001", "拡張期血圧（その他）", "mm[Hg]", "mmHg"),
    "hba1c": ("3D046000001999902", "HbA1c（NGSP）（その他）", "%", "%"),
    "ldl": ("3F077000002399901", "LDLコレステロール", "mg/dL", "mg/dL"),
    "hdl": ("3F070000002399901", "HDLコレステロール", "mg/dL", "mg/dL"),
    "triglycerides": ("3F015000002399901", "中性脂肪（トリグリセリド）", "mg/dL", "mg/dL"),
    "ast": ("3B035000002399901", "AST（GOT）", "U/L", "U/L"),
    "alt": ("3B045000002399901", "ALT（GPT）", "U/L", "U/L"),
    "ggt": ("3B090000002399901", "γ-GT（γ-GTP）", "U/L", "U/L"),
    "fasting_glucose": ("3D010000001999901", "空腹時血糖", "mg/dL", "mg/dL"),
}
URINE_PROTEIN = ("1A010000000190111", "尿蛋白（試験紙法・目視）")
VITAL_ITEMS = frozenset({"height_cm", "weight_kg", "bmi", "waist_cm", "systolic", "diastolic"})
