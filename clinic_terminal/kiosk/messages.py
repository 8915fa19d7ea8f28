"""What the patient screen says, in plain Japanese, for every outcome (one place for the wording)."""

from __future__ import annotations

from typing import Final

ASK_STAFF: Final = "受付にお声がけください。"

CARD_ERRORS: Final[dict[str, str]] = {
    "no_reader": "カードリーダーに接続できません。" + ASK_STAFF,
    "no_card": "カードが読み取れませんでした。カードを置き直してください。",
    "card_removed": "読み取り中にカードが外れました。もう一度カードを置いてください。",
    "not_my_number_card": "マイナンバーカードではないようです。マイナンバーカードを置いてください。",
    "card_protocol": "カードが読み取れませんでした。カードを置き直してください。",
    "card_error": "カードが読み取れませんでした。カードを置き直してください。",
    "forbidden_file": "カードが読み取れませんでした。" + ASK_STAFF,
    "collation_b_wrong": "顔認証の準備ができませんでした。暗証番号で確認してください。",
    "collation_b_locked": "このカードでは顔認証をご利用いただけません。暗証番号で確認してください。",
    "collation_b_format": "顔認証の準備ができませんでした。暗証番号で確認してください。",
}

CARD_TAKEN_OUT: Final = (
    "カードが取り出されました。受付はまだ終わっていません。もう一度カードを置いて、「もう一度読み取る」を押してください。"
)

#: Card errors that mean "could not read it": after two in a row the patient goes to reception.
CARD_UNREADABLE: Final = frozenset({"no_card", "card_removed", "card_protocol", "card_error"})
CARD_UNREADABLE_STAFF: Final = "カードが読み取れませんでした。" + ASK_STAFF

PIN_FORMAT: Final = "暗証番号は数字4桁です。"
PIN_RESET_WHERE: Final = "（暗証番号のロックの解除・再設定は、お住まいの市区町村の窓口で行えます）"
PIN_BLOCKED: Final = "暗証番号がロックされています。" + ASK_STAFF + PIN_RESET_WHERE
PIN_BLOCKED_FACE: Final = "暗証番号がロックされています。顔認証をご利用いただくか、" + ASK_STAFF + PIN_RESET_WHERE
PIN_LAST_TRY_FACE: Final = "次に間違えるとロックされます。顔認証に切り替えることもできます。"


def pin_wrong(tries_left: int, *, face: bool = False) -> str:
    """A wrong PIN; at the last try, with 顔認証 available, the patient is offered it instead."""
    text = f"暗証番号が違います。あと{tries_left}回間違えるとロックされます。"
    if tries_left == 1 and face:
        text += "顔認証に切り替えることもできます。"
    return text


FACE_UNAVAILABLE: Final = "顔認証は現在ご利用いただけません。暗証番号で確認してください。"
FACE_STATUS_PREPARING: Final = "準備中です…"
FACE_STATUS_FRAMING: Final = "画面にご自分の顔が映っています。枠の中に顔を合わせてください。"
FACE_STATUS_DETECTING: Final = "顔を検出中です。カメラを見てください。"
FACE_STATUS_MATCHING: Final = "照合中です。そのままお待ちください。"
FACE_STATUS_ASKING: Final = "資格情報を確認しています…"

FACE_FAILED: Final[dict[str, str]] = {
    "no_face": "お顔が検出できませんでした。",
    "several_faces": "複数のお顔が写っています。お一人でカメラの前に立ってください。",
    "no_match": "カードの写真と一致しませんでした。",
    "liveness_failed": "お顔が確認できませんでした（まばたきが確認できませんでした）。",
    "camera_unavailable": "カメラが使えません。",
    "card_photo_unreadable": "カードの写真が読み取れませんでした。",
}
FACE_FAILED_TAIL: Final = "暗証番号で確認してください。"

# 照合番号B (unlocks the card-face photo for 顔認証): when it cannot be had automatically, staff
# may key it in from the card front (screen ``collation_b_entry``), or the patient uses the PIN.
COLLATION_B_FALLBACK: Final[dict[str, str]] = {
    "collation_b_unread": "カードの照合番号Bを自動で読み取れませんでした。",
    "collation_b_not_tried": "カードの照合番号Bの残り照合回数が少ないため、自動では確認しません。",
    "collation_b_already_tried": "カードの照合番号Bを自動で確認できませんでした。",
    "collation_b_wrong": "カードの照合番号Bを自動で確認できませんでした。",
    "collation_b_last_try": (
        "カードの照合番号Bの残り照合回数が1回以下のため、この端末では確認しません"
        "（ロックを防ぐため）。暗証番号で確認してください。"
    ),
}
COLLATION_B_STAFF_TAIL: Final = "受付の職員がカードの照合番号Bを入力するか、暗証番号で確認してください。"
COLLATION_B_FORMAT: Final = "照合番号Bの形が正しくありません。番号を確かめてください（カードには送っていません）。"


def collation_b_keyed_wrong(tries_left: int) -> str:
    return (
        f"照合番号Bが一致しませんでした。カードの残り照合回数：{tries_left}回"
        "（残り1回になると、この端末では入力できません）。番号を確かめてもう一度入力するか、暗証番号で確認してください。"
    )


SERVER_ERRORS: Final[dict[str, str]] = {
    "unavailable": "ただいま資格確認ができません。" + ASK_STAFF,
    "rate_limited": "ただいま混み合っています。" + ASK_STAFF,
    "certificate_expired": "カードの電子証明書の有効期限が切れています。" + ASK_STAFF,
    "certificate_revoked": "カードの電子証明書が失効しています。" + ASK_STAFF,
    "certificate_untrusted": "カードの電子証明書を確認できませんでした。" + ASK_STAFF,
    "signature_invalid": "カードの確認ができませんでした。もう一度お試しいただくか、" + ASK_STAFF,
    "attestation_invalid": "顔認証の結果を確認できませんでした。暗証番号で確認してください。",
    "challenge_expired": "時間がかかりすぎました。もう一度お試しください。",
    "challenge_unknown": "時間がかかりすぎました。もう一度お試しください。",
    "challenge_reused": "もう一度お試しください。",
    "registration_no_match": (
        "カードの情報（氏名・生年月日・性別・住所）と保険者に登録された情報が一致しませんでした。" + ASK_STAFF
    ),
    "registration_ambiguous": "ご本人を特定できませんでした。" + ASK_STAFF,
    "registration_conflict": (
        "このカードは利用登録できませんでした（ほかのカードまたはほかの方の登録と重なります）。" + ASK_STAFF
    ),
}
SERVER_DEFAULT: Final = "資格確認ができませんでした。" + ASK_STAFF

#: 初回登録 after the PIN was accepted (PIN-first path): say the first PIN was right, and why a
#: second one is asked — the card's 券面事項入力補助 PIN reads the four facts for the registration
REGISTER_AFTER_PIN: Final = (
    "暗証番号は確認できました。"
    "このカードは健康保険証としての利用登録がまだです（初回登録）。"
    "登録のため、カードに記録された氏名・生年月日・性別・住所を読み取り、保険者の情報と照合します。"
    "読み取りに使う「券面事項入力補助用」の暗証番号（数字4桁。多くの方は先ほどと同じ番号）を、もう一度入力してください。"
)
REGISTER_EXPLAIN: Final = (
    "このカードは健康保険証としての利用登録がまだです。"
    "登録のため、カードに記録された氏名・生年月日・性別・住所を読み取り、保険者の情報と照合します。"
    "カードの暗証番号（数字4桁）を入力してください。"
)

VALIDITY: Final[dict[int, str]] = {
    1: "有効",
    2: "資格喪失",
    3: "資格喪失（新しい資格があります）",
    4: "該当する資格がありません",
    5: "複数の資格が該当します",
}
NOT_USABLE: Final = "保険の資格が確認できませんでした。" + ASK_STAFF
CANNOT_SHARE: Final = (
    "お持ちの資格（資格証明書）では、薬剤情報などの提供はご利用いただけません。このまま受付を完了します。"
)
DONE: Final = "受付が完了しました。カードをお取りください。"
CONSENT_FAILED: Final = "同意の登録ができませんでした。" + ASK_STAFF
INTERNAL: Final = "エラーが発生しました。" + ASK_STAFF
CERT_EXPIRES_SOON: Final = "カードの電子証明書の有効期限が近づいています。お住まいの市区町村で更新してください。"
CERT_GRACE: Final = "カードの電子証明書の有効期限が切れています。お住まいの市区町村で更新してください。"

# --- outage mode (緊急時): the central server cannot be reached
OUTAGE: Final = "ただいま資格確認ができません。受付で申立書をご記入ください。"

# --- for reception: why the patient screen sent a patient to the desk (staff board rows)
REFERRAL: Final[dict[str, str]] = {
    "unavailable": "資格確認できず — 申立書で受付",
    "pin_blocked": "暗証番号ロック — 保険証・資格確認書で確認",
    "no_reader": "カードリーダーに接続できません",
    "forbidden_file": "カードが読み取れません",
    "no_card": "カードが読み取れません（2回）",
    "card_removed": "カードが読み取れません（2回）",
    "card_protocol": "カードが読み取れません（2回）",
    "card_error": "カードが読み取れません（2回）",
    "not_my_number_card": "マイナンバーカードではありません",
    "certificate_expired": "電子証明書の期限切れ",
    "certificate_revoked": "電子証明書の失効",
    "certificate_untrusted": "電子証明書を確認できません",
    "signature_invalid": "カードの署名を確認できません",
    "registration_no_match": "初回登録: 4情報が一致しません",
    "registration_ambiguous": "初回登録: 本人を特定できません",
    "rate_limited": "サーバー混雑のため確認できず",
    "face": "顔認証できず・暗証番号も使えません",
}
REFERRAL_DEFAULT: Final = "受付での確認が必要です"
VERIFIED_BY: Final[dict[str, str]] = {
    "pin": "暗証番号はカードで確認済み",
    "face": "顔認証は端末で照合済み",
}


def referral_label(code: str) -> str:
    """The staff board's wording for a referral code (``face:<reason>`` for a face failure)."""
    base, _, detail = code.partition(":")
    text = REFERRAL.get(base, REFERRAL_DEFAULT)
    if base == "face" and detail:
        reason = FACE_FAILED.get(detail) or COLLATION_B_FALLBACK.get(detail) or CARD_ERRORS.get(detail)
        if reason:
            text += f"（{reason.rstrip('。')}）"
    return text
