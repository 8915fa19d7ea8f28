"""Code tables of the domain (docs/domain.md). Codes travel as strings exactly as listed."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

SEX_CODES = frozenset({"1", "2", "3"})  # male, female, unset
PERSONAL_FAMILY_CODES = frozenset({"1", "2"})  # 本人, 家族
CARD_CLASSIFICATIONS = frozenset({"01", "02", "03", "04", "05", "06", "07", "A1"})  # 01 general, 05 資格証明書
CERTIFICATE_TYPE_CARDS = frozenset({"05"})  # 資格証明書-type: cannot share information
REASONS_OF_LOSS = frozenset({"01", "02", "03", "99"})  # death, welfare, other insurance, other
COPAY_RATIOS = frozenset({10, 20, 30})
LIMIT_KINDS = frozenset({"01", "02", "03"})
LIMIT_CLASSES = frozenset({f"A{i:02d}" for i in range(1, 7)} | {f"B{i:02d}" for i in range(1, 11)})
DISEASE_CATEGORIES = frozenset({"1", "2", "3"})  # dialysis, haemophilia, HIV from blood products
# 医療費通知情報: the kind of care of an expenses row
CARE_KINDS: dict[str, str] = {"1": "医科入院", "2": "医科外来", "3": "歯科", "4": "調剤", "5": "訪問看護"}

Sex = Literal["1", "2", "3"]
PersonalFamily = Literal["1", "2"]


class Validity(IntEnum):
    VALID = 1
    INVALID = 2
    INVALID_NEWER_EXISTS = 3
    NONE = 4
    MULTIPLE = 5
