"""Synthetic insured population and the insurer files that describe it.

Faker (ja_JP) fills small pools of names and addresses once; people are then combined from the
pools with one seeded ``random.Random``, so a million people take seconds and the same
``(n_people, seed, today)`` always gives the same population.

What it produces (contract: "Insurer files"):

- insurers with valid check digits: 8-digit 協会けんぽ / 健保組合 / 共済 numbers, 6-digit 国保
  numbers, ``39…`` 後期高齢者 numbers (everyone 75 and over, one person per card);
- households: 本人 (branch ``00``, personal_family ``1``) and family (``01``, ``02`` …, ``2``), all
  sharing insurer + symbol + number, so a by-number query without the branch is ambiguous;
- copay 30 %, 20 % under 6, 20 % from 70 to 74 (with ``elderly_*`` columns; some 30 %),
  後期 10 % (some 30 %); some 限度額 (``limit_*``) certificates and 特定疾病 entries (several
  ``|``-separated in one row); some ``change`` rows (copay or address, from a date) and ``loss``
  rows (reason 01 / 03 / 99, ``valid_to`` = last day of eligibility);
- kana in full-width katakana, a few written half-width (to exercise normalisation); a few names
  with rare characters (𠮷, 髙); medications (valid pharmacy codes) and checkups (特定健診, 40–74);
  expenses (医療費通知情報: per person, month, facility and kind of care, what the care cost and
  what the person paid at their copay ratio); 公費負担医療 受給者証 (public_expense: 難病, 小児慢性,
  自立支援, a municipal child program, with their monthly caps) for a few insured people; and
  医療扶助 (assistance: 生活保護 recipients, who are not insured, with the 医療券/調剤券 of the
  last three months from a few 福祉事務所, some missing from the current month: 未委託); and
  procedures (診療・手術 from claims: 9-digit 診療行為コード, 診療 or 手術, in or out of hospital,
  within the last 5 years).

No field ever holds a 12-digit run with a valid My Number check digit (tests assert it).

CLI: ``python -m testbed.population --people N --out DIR [--seed S] [--encoding cp932]
[--format csv|ndjson|both]``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from faker import Faker

from schemas.identifiers import luhn_check_digit
from schemas.insurer_files import (
    ASSISTANCE_COLUMNS,
    ASSISTANCE_OPTIONAL,
    CHECKUP_COLUMNS,
    CHECKUP_OPTIONAL,
    ELIGIBILITY_COLUMNS,
    ELIGIBILITY_OPTIONAL,
    EXPENSE_COLUMNS,
    MEDICATION_COLUMNS,
    PROCEDURE_COLUMNS,
    PUBLIC_EXPENSE_COLUMNS,
    PUBLIC_EXPENSE_OPTIONAL,
)

InsurerKind = Literal["kyokai", "kumiai", "kyosai", "kokuho", "koki"]

IDEOGRAPHIC_SPACE = "\u3000"
RARE_NAMES = (("𠮷田", "ヨシダ"), ("髙橋", "タカハシ"), ("髙木", "タカギ"), ("𠮷川", "ヨシカワ"))
# CP932 cannot hold these; Shift_JIS insurers send the common form
# outside JIS X 0208 too, with ``gaiji_rate`` (off by default): たつさき U+FA11, はしご高, and a
# private-use 外字 (U+E000, the insurer's own character) in the surname and the address
GAIJI_NAMES = (("山﨑", "ヤマザキ"), ("髙﨑", "タカサキ"), ("\ue000野", "ハラノ"))
GAIJI_ADDRESS_MARK = "\ue000"
_CP932_FALLBACK = str.maketrans({"𠮷": "吉"})


# ---------------------------------------------------------------- insurers


def with_check_digit(digits: str) -> str:
    return digits + str(luhn_check_digit(digits))


@dataclass(frozen=True, slots=True)
class Insurer:
    number: str
    name: str
    kind: InsurerKind


def default_insurers() -> tuple[Insurer, ...]:
    """A handful of insurers of every kind; numbers carry valid check digits."""
    return (
        Insurer(with_check_digit("0113001"), "全国健康保険協会 東京支部", "kyokai"),
        Insurer(with_check_digit("0127001"), "全国健康保険協会 大阪支部", "kyokai"),
        Insurer(with_check_digit("0613512"), "東都電機健康保険組合", "kumiai"),
        Insurer(with_check_digit("0627305"), "浪速商事健康保険組合", "kumiai"),
        Insurer(with_check_digit("3113009"), "東京都職員共済組合", "kyosai"),
        Insurer(with_check_digit("13810"), "世田谷区国民健康保険", "kokuho"),
        Insurer(with_check_digit("27100"), "大阪市国民健康保険", "kokuho"),
        Insurer(with_check_digit("3913001"), "東京都後期高齢者医療広域連合", "koki"),
        Insurer(with_check_digit("3927001"), "大阪府後期高齢者医療広域連合", "koki"),
    )


# ---------------------------------------------------------------- people


@dataclass(frozen=True, slots=True)
class Disease:
    category: str  # 1 dialysis, 2 haemophilia, 3 HIV from blood products
    valid_from: dt.date
    valid_to: dt.date | None
    self_pay: int


@dataclass(frozen=True, slots=True)
class Change:
    """A ``change`` row: from ``on`` (effective date), the given fields; None carries over."""

    on: dt.date
    copay_ratio: int | None = None
    address: str | None = None
    post_number: str | None = None


@dataclass(slots=True)
class Person:
    insurer_number: str
    symbol: str
    number: str
    branch: str
    name: str
    name_kana: str  # full-width katakana, family and given name separated by U+3000
    sex: str
    birth_date: dt.date
    address: str
    post_number: str
    personal_family: str  # 1 本人, 2 家族
    card_classification: str
    valid_from: dt.date
    copay_ratio: int
    household_size: int
    kana_halfwidth: bool = False  # written half-width in the files
    elderly_ratio: int | None = None
    elderly_valid_from: dt.date | None = None
    limit_kind: str | None = None
    limit_class: str | None = None
    limit_valid_from: dt.date | None = None
    limit_valid_to: dt.date | None = None
    diseases: tuple[Disease, ...] = ()
    change: Change | None = None
    lost_on: dt.date | None = None  # last day of eligibility (the loss row's valid_to)
    reason_of_loss: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.insurer_number, self.symbol, self.number, self.branch

    def is_valid_on(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.lost_on is None or day <= self.lost_on)

    def copay_on(self, day: dt.date) -> int:
        if self.change is not None and self.change.copay_ratio is not None and day >= self.change.on:
            return self.change.copay_ratio
        return self.copay_ratio

    def address_on(self, day: dt.date) -> str:
        if self.change is not None and self.change.address is not None and day >= self.change.on:
            return self.change.address
        return self.address

    def age_on(self, day: dt.date) -> int:
        return age(self.birth_date, day)


def age(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _birthday(birth: dt.date, years: int) -> dt.date:
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:  # 29 February
        return dt.date(birth.year + years, 3, 1)


def _first_of_next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


# ---------------------------------------------------------------- pools


@dataclass(frozen=True, slots=True)
class _Pools:
    last: tuple[tuple[str, str], ...]
    male: tuple[tuple[str, str], ...]
    female: tuple[tuple[str, str], ...]
    addresses: tuple[tuple[str, str], ...]  # (address, post number)


def _cp932_safe(text: str) -> bool:
    try:
        text.encode("cp932")
    except UnicodeEncodeError:
        return False
    return True


def _pools(seed: int, size: int = 600) -> _Pools:
    fake = Faker("ja_JP")
    fake.seed_instance(seed)

    def pairs(make: str) -> tuple[tuple[str, str], ...]:
        out: dict[str, str] = {}
        for _ in range(size):
            kanji, kana, _roman = getattr(fake, make)()
            if _cp932_safe(kanji + kana):
                out[kanji] = kana
        return tuple(sorted(out.items()))

    addresses: list[tuple[str, str]] = []
    for _ in range(size * 2):
        address = (f"{fake.prefecture()}{fake.city()}{fake.town()}{fake.chome()}{fake.ban()}{fake.gou()}"
                   + (f"{IDEOGRAPHIC_SPACE}{fake.building_name()}{fake.building_number()}"
                      if fake.random.random() < 0.4 else ""))
        if _cp932_safe(address):
            addresses.append((address, fake.zipcode()))
    return _Pools(pairs("last_name_pair"), pairs("first_name_male_pair"), pairs("first_name_female_pair"),
                  tuple(addresses))


# full-width katakana → half-width (ｶﾞ for ガ): the inverse of NFKC on the half-width block
_HALF: dict[str, str] = {}
for _code in range(0xFF61, 0xFFA0):
    _half = chr(_code)
    _HALF.setdefault(unicodedata.normalize("NFKC", _half), _half)
    for _mark in ("ﾞ", "ﾟ"):
        _full = unicodedata.normalize("NFKC", _half + _mark)
        if len(_full) == 1:
            _HALF.setdefault(_full, _half + _mark)
_HALF[IDEOGRAPHIC_SPACE] = " "
_HALF_TABLE = str.maketrans(_HALF)


def to_halfwidth_kana(text: str) -> str:
    """``ヤマダ　タロウ`` → ``ﾔﾏﾀﾞ ﾀﾛｳ`` (NFKC turns it back)."""
    return text.translate(_HALF_TABLE)


# ---------------------------------------------------------------- generation


@dataclass
class PopulationConfig:
    """Shares of the population given each feature (per person or per household)."""

    loss_rate: float = 0.03
    change_rate: float = 0.05
    limit_rate: float = 0.02
    disease_rate: float = 0.005
    halfwidth_kana_rate: float = 0.02
    rare_name_rate: float = 0.005
    gaiji_rate: float = 0.0  # households named from GAIJI_NAMES, a 外字 in the address (docs/uploads.md)
    certificate_card_rate: float = 0.01  # card classification 05 (資格証明書)
    insurers: tuple[Insurer, ...] = field(default_factory=default_insurers)


class _Generator:
    def __init__(self, seed: int, today: dt.date, config: PopulationConfig) -> None:
        self.rng = random.Random(seed)
        self.today = today
        self.config = config
        self.pools = _pools(seed)
        by_kind: dict[str, list[Insurer]] = {}
        for insurer in config.insurers:
            by_kind.setdefault(insurer.kind, []).append(insurer)
        self.working = [i for i in config.insurers if i.kind in ("kyokai", "kumiai", "kyosai", "kokuho")]
        self.koki = by_kind.get("koki", [])
        self.koki_numbers = frozenset(i.number for i in self.koki)
        self.counters = {i.number: 0 for i in config.insurers}
        self.epoch = today.toordinal()

    def _day(self, start: dt.date, end: dt.date) -> dt.date:
        a, b = start.toordinal(), end.toordinal()
        return dt.date.fromordinal(a if b <= a else self.rng.randint(a, b))

    def _birth(self, age_low: int, age_high: int) -> dt.date:
        oldest = _birthday(self.today, -(age_high + 1)) + dt.timedelta(days=1)
        youngest = _birthday(self.today, -age_low)
        return self._day(oldest, youngest)

    def _symbol_number(self, insurer: Insurer) -> tuple[str, str]:
        self.counters[insurer.number] += 1
        n = self.counters[insurer.number]
        rng = self.rng
        if insurer.kind == "koki":
            return "", f"{n:08d}"
        if insurer.kind == "kokuho":
            return f"{insurer.number[2:4]}{n // 5000 % 100:02d}", f"{n:07d}"
        if insurer.kind == "kyokai":
            return f"{rng.randint(1000, 9999)}{rng.randint(1000, 9999)}", str(n)
        if rng.random() < 0.1:  # kanji / full-width symbols occur
            return rng.choice(("東", "西", "本社", "１２")) + str(rng.randint(1, 99)), str(n)
        return str(rng.randint(1, 999)), str(n)

    def _name(self, sex: str, last: tuple[str, str]) -> tuple[str, str]:
        first = self.rng.choice(self.pools.male if sex == "1" else self.pools.female)
        return f"{last[0]}{IDEOGRAPHIC_SPACE}{first[0]}", f"{last[1]}{IDEOGRAPHIC_SPACE}{first[1]}"

    def _copay(self, person: Person) -> None:
        years = age(person.birth_date, self.today)
        rng = self.rng
        if person.insurer_number in self.koki_numbers:
            person.copay_ratio = 30 if rng.random() < 0.07 else 10
        elif years < 6:
            person.copay_ratio = 20
        elif years >= 70:
            ratio = 30 if rng.random() < 0.1 else 20
            person.copay_ratio = ratio
            person.elderly_ratio = ratio
            person.elderly_valid_from = max(_first_of_next_month(_birthday(person.birth_date, 70)),
                                            person.valid_from)
        else:
            person.copay_ratio = 30

    def _extras(self, person: Person) -> None:
        rng, cfg, today = self.rng, self.config, self.today
        if rng.random() < cfg.limit_rate:
            start = dt.date(today.year if today.month >= 8 else today.year - 1, 8, 1)
            person.limit_kind = "01"
            over70 = age(person.birth_date, today) >= 70
            person.limit_class = rng.choice(("B01", "B02", "B03", "B04", "B05") if over70
                                            else ("A01", "A02", "A03", "A04", "A05"))
            person.limit_valid_from = max(start, person.valid_from)
            person.limit_valid_to = dt.date(start.year + 1, 7, 31)
        if rng.random() < cfg.disease_rate:
            start = max(person.valid_from, self._day(_birthday(today, -10), today))
            diseases = [Disease("1", start, None, rng.choice((10000, 20000)))]
            if rng.random() < 0.2:
                diseases.append(Disease("2", start, _birthday(today, 1), 10000))
            person.diseases = tuple(diseases)
        if rng.random() < cfg.certificate_card_rate:
            person.card_classification = "05"

    def household(self) -> list[Person]:
        rng, today, cfg = self.rng, self.today, self.config
        head_age = min(int(rng.triangular(18, 100, 45)), 99)
        if head_age >= 75 and self.koki:
            insurer = rng.choice(self.koki)
            size = 1
        else:
            insurer = rng.choice(self.working)
            head_age = min(head_age, 74)
            size = rng.choices((1, 2, 3, 4, 5), weights=(35, 25, 20, 15, 5))[0]
        symbol, number = self._symbol_number(insurer)
        last = rng.choice(RARE_NAMES) if rng.random() < cfg.rare_name_rate else rng.choice(self.pools.last)
        address, post = rng.choice(self.pools.addresses)
        if cfg.gaiji_rate and rng.random() < cfg.gaiji_rate:  # no draw when off: other outputs unchanged
            last = rng.choice(GAIJI_NAMES)
            address = address + GAIJI_ADDRESS_MARK
        head_birth = self._birth(head_age, head_age)
        if insurer.kind == "koki":
            joined = _birthday(head_birth, 75)
        else:
            joined = self._day(max(_birthday(head_birth, 18), _birthday(today, -30)), today)
        people: list[Person] = []
        for i in range(size):
            if i == 0:
                birth, sex = head_birth, rng.choice("12")
            elif i == 1:
                spouse_age = max(18, min(74, head_age + rng.randint(-5, 5)))
                birth, sex = self._birth(spouse_age, spouse_age), "2" if people[0].sex == "1" else "1"
            else:
                birth, sex = self._birth(0, min(22, max(head_age - 18, 0))), rng.choice("12")
            name, kana = self._name(sex, last)
            person = Person(
                insurer.number, symbol, number, f"{i:02d}", name, kana, sex, birth, address, post,
                "1" if i == 0 else "2", "01", max(joined, birth), 30, size,
                kana_halfwidth=rng.random() < cfg.halfwidth_kana_rate,
            )
            self._copay(person)
            self._extras(person)
            people.append(person)
        self._events(people)
        return people

    def _events(self, people: list[Person]) -> None:
        rng, cfg, today = self.rng, self.config, self.today
        head = people[0]
        r = rng.random()
        if r < cfg.loss_rate:
            if head.insurer_number in self.koki_numbers or rng.random() < 0.3:
                reason, lost = ("01", people[:1])  # death of one person
            else:
                reason, lost = (rng.choice(("03", "03", "99")), people)  # the household leaves
            last_day = self._day(max(head.valid_from, _birthday(today, -2)), today - dt.timedelta(days=1))
            for person in lost:
                person.lost_on = max(last_day, person.valid_from)
                person.reason_of_loss = reason
        elif r < cfg.loss_rate + cfg.change_rate:
            latest = max(p.valid_from for p in people)  # a change needs everyone's period to exist
            on = self._day(max(latest + dt.timedelta(days=1), _birthday(today, -1)),
                           today + dt.timedelta(days=30))
            if rng.random() < 0.5:
                address, post = rng.choice(self.pools.addresses)
                for person in people:
                    person.change = Change(on, address=address, post_number=post)
            elif head.insurer_number not in self.koki_numbers and head.copay_ratio == 30 and \
                    head.elderly_ratio is None:
                head.change = Change(on, copay_ratio=20)  # e.g. a copay correction from a date
            else:
                head.change = Change(on, copay_ratio=30 if head.copay_ratio != 30 else 20)


def iter_people(n_people: int, seed: int = 0, *, today: dt.date | None = None,
                config: PopulationConfig | None = None) -> Iterator[Person]:
    """``n_people`` people, household by household (constant memory: for large ``n``)."""
    gen = _Generator(seed, today or dt.date.today(), config or PopulationConfig())
    produced = 0
    while produced < n_people:
        for person in gen.household()[: n_people - produced]:
            produced += 1
            yield person


@dataclass
class Population:
    """A generated population held in memory, with the questions tests ask of it."""

    people: list[Person]
    today: dt.date
    insurers: tuple[Insurer, ...]

    def valid_on(self, day: dt.date | None = None) -> list[Person]:
        day = day or self.today
        return [p for p in self.people if p.is_valid_on(day)]

    def lost(self) -> list[Person]:
        return [p for p in self.people if p.lost_on is not None]

    def changed(self) -> list[Person]:
        return [p for p in self.people if p.change is not None]

    def households(self) -> dict[tuple[str, str, str], list[Person]]:
        out: dict[tuple[str, str, str], list[Person]] = {}
        for p in self.people:
            out.setdefault((p.insurer_number, p.symbol, p.number), []).append(p)
        return out

    def ambiguous_without_branch(self) -> list[list[Person]]:
        """Households where insurer + symbol + number (no branch) match several people."""
        return [h for h in self.households().values() if len(h) > 1]

    def with_elderly(self) -> list[Person]:
        return [p for p in self.people if p.elderly_ratio is not None]

    def with_limit(self) -> list[Person]:
        return [p for p in self.people if p.limit_kind is not None]

    def with_diseases(self) -> list[Person]:
        return [p for p in self.people if p.diseases]

    def find(self, insurer_number: str, symbol: str, number: str, branch: str) -> Person | None:
        key = (insurer_number, symbol, number, branch)
        return next((p for p in self.people if p.key == key), None)


def generate_population(n_people: int, seed: int = 0, *, today: dt.date | None = None,
                        config: PopulationConfig | None = None) -> Population:
    config = config or PopulationConfig()
    today = today or dt.date.today()
    return Population(list(iter_people(n_people, seed, today=today, config=config)), today, config.insurers)


# ---------------------------------------------------------------- rows


ELIGIBILITY_HEADER = (*ELIGIBILITY_COLUMNS, *ELIGIBILITY_OPTIONAL)
MEDICATION_HEADER = MEDICATION_COLUMNS
CHECKUP_HEADER = (*CHECKUP_COLUMNS, *CHECKUP_OPTIONAL)
EXPENSE_HEADER = EXPENSE_COLUMNS
PUBLIC_EXPENSE_HEADER = (*PUBLIC_EXPENSE_COLUMNS, *PUBLIC_EXPENSE_OPTIONAL)
ASSISTANCE_HEADER = (*ASSISTANCE_COLUMNS, *ASSISTANCE_OPTIONAL)
PROCEDURE_HEADER = PROCEDURE_COLUMNS
Row = dict[str, str | int | float | list[str]]


def _iso(day: dt.date | None) -> str:
    return day.isoformat() if day else ""


def _key_row(p: Person) -> Row:
    return {"insurer_number": p.insurer_number, "symbol": p.symbol, "number": p.number, "branch": p.branch}


def add_row(p: Person) -> Row:
    row: Row = {"action": "add", **_key_row(p), "name": p.name,
                "name_kana": to_halfwidth_kana(p.name_kana) if p.kana_halfwidth else p.name_kana,
                "sex": p.sex, "birth_date": p.birth_date.isoformat(), "address": p.address,
                "post_number": p.post_number, "personal_family": p.personal_family,
                "card_classification": p.card_classification, "valid_from": p.valid_from.isoformat(),
                "copay_ratio": p.copay_ratio}
    if p.elderly_ratio is not None:
        row["elderly_ratio"] = p.elderly_ratio
        row["elderly_valid_from"] = _iso(p.elderly_valid_from)
    if p.limit_kind is not None:
        row.update(limit_kind=p.limit_kind, limit_class=p.limit_class or "",
                   limit_valid_from=_iso(p.limit_valid_from), limit_valid_to=_iso(p.limit_valid_to))
    if p.diseases:
        row.update(disease_category=[d.category for d in p.diseases],
                   disease_valid_from=[_iso(d.valid_from) for d in p.diseases],
                   disease_valid_to=[_iso(d.valid_to) for d in p.diseases],
                   disease_self_pay=[str(d.self_pay) for d in p.diseases])
    return row


def change_row(p: Person) -> Row | None:
    c = p.change
    if c is None:
        return None
    row: Row = {"action": "change", **_key_row(p), "valid_from": c.on.isoformat()}
    if c.copay_ratio is not None:
        row["copay_ratio"] = c.copay_ratio
    if c.address is not None:
        row["address"] = c.address
        row["post_number"] = c.post_number or ""
    return row


def loss_row(p: Person) -> Row | None:
    if p.lost_on is None:
        return None
    return {"action": "loss", **_key_row(p), "valid_to": p.lost_on.isoformat(),
            "reason_of_loss": p.reason_of_loss or "99"}


def eligibility_rows(people: Iterable[Person]) -> Iterator[Row]:
    """``add`` rows for everyone, then the ``change`` and ``loss`` rows (events come after the
    state they change). Only the event rows are held in memory."""
    events: list[Row] = []
    for p in people:
        yield add_row(p)
        for event in (change_row(p), loss_row(p)):
            if event is not None:
                events.append(event)
    yield from events


_DRUGS = (
    ("1149019F1560", "ロキソプロフェンナトリウム錠６０ｍｇ", "錠"),
    ("2149039F1046", "アムロジピン錠５ｍｇ", "錠"),
    ("2189017F1234", "アトルバスタチン錠１０ｍｇ", "錠"),
    ("3969007F1072", "メトホルミン塩酸塩錠２５０ｍｇ", "錠"),
    ("2325003F2033", "ファモチジン錠２０ｍｇ", "錠"),
    ("4490025F1011", "フェキソフェナジン塩酸塩錠６０ｍｇ", "錠"),
    ("6132015C1035", "セフカペンピボキシル塩酸塩細粒小児用１０％", "g"),
    ("2646724N1030", "ヘパリン類似物質クリーム０．３％", "g"),
    ("1124017F1024", "ゾルピデム酒石酸塩錠５ｍｇ", "錠"),
    ("2171022F1030", "ニフェジピンＣＲ錠２０ｍｇ", "錠"),
    ("2144009F1020", "カンデサルタン錠８ｍｇ", "錠"),
    ("1141007C1075", "カロナール細粒２０％", "g"),
)


def _pharmacy_codes(rng: random.Random, n: int = 200) -> list[str]:
    return [with_check_digit(f"{rng.randint(1, 47):02d}4{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}")
            for _ in range(n)]


def medication_rows(people: Iterable[Person], seed: int = 0, *, today: dt.date | None = None,
                    share: float = 0.3) -> Iterator[Row]:
    """Claim-derived drug history: for ``share`` of people, 1–4 dispensings in the last 3 years."""
    rng = random.Random(seed ^ 0x5EED)
    today = today or dt.date.today()
    pharmacies = _pharmacy_codes(rng)
    start = _birthday(today, -3)
    for p in people:
        if rng.random() >= share:
            continue
        first = max(start, p.valid_from)
        last = p.lost_on if p.lost_on is not None and p.lost_on < today else today
        for _ in range(rng.randint(1, 4)):
            code, name, unit = rng.choice(_DRUGS)
            days = rng.choice((7, 14, 28, 30, 56, 90))
            per_day = rng.choice((1, 2, 3)) if unit == "錠" else rng.choice((0.5, 1.0, 1.5))
            yield {**_key_row(p), "dispensed_on": _day(rng, first, last).isoformat(),
                   "facility_code": rng.choice(pharmacies), "drug_code": code, "drug_name": name,
                   "quantity": round(per_day * days, 1), "unit": unit, "days": days}


def _day(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    a, b = start.toordinal(), end.toordinal()
    return dt.date.fromordinal(a if b <= a else rng.randint(a, b))


def checkup_rows(people: Iterable[Person], seed: int = 0, *, today: dt.date | None = None,
                 share: float = 0.5) -> Iterator[Row]:
    """特定健診 results for ``share`` of people aged 40–74: one a year, up to 3 years."""
    rng = random.Random(seed ^ 0xC4EC)
    today = today or dt.date.today()
    for p in people:
        years = age(p.birth_date, today)
        if not 40 <= years <= 74 or rng.random() >= share:
            continue
        male = p.sex == "1"
        height = rng.gauss(171 if male else 158, 6)
        base_weight = rng.gauss(22.5, 3) * (height / 100) ** 2
        for back in range(rng.randint(1, 3)):
            checked = _day(rng, max(_birthday(today, -back - 1), p.valid_from), _birthday(today, -back))
            if checked > today or (p.lost_on is not None and checked > p.lost_on):
                continue
            weight = max(35.0, base_weight + rng.gauss(0, 1.5))
            systolic = int(rng.gauss(120 + (years - 40) * 0.5, 14))
            row: Row = {
                **_key_row(p), "checked_on": checked.isoformat(),
                "height_cm": round(height, 1), "weight_kg": round(weight, 1),
                "waist_cm": round(max(55.0, rng.gauss(85 if male else 80, 8)), 1),
                "bmi": round(weight / (height / 100) ** 2, 1),
                "systolic": systolic, "diastolic": max(40, int(systolic * 0.62 + rng.gauss(0, 6))),
                "hba1c": round(min(max(rng.gauss(5.6, 0.5), 4.0), 12.0), 1),
                "ldl": max(40, int(rng.gauss(120, 30))), "hdl": max(20, int(rng.gauss(60, 15))),
                "triglycerides": max(30, int(rng.lognormvariate(4.7, 0.5))),
                "ast": max(8, int(rng.gauss(22, 6))), "alt": max(5, int(rng.gauss(20, 9))),
                "ggt": max(8, int(rng.lognormvariate(3.3, 0.6))),
                "fasting_glucose": max(60, int(rng.gauss(98, 12))),
                "urine_protein": rng.choices(("-", "±", "1+", "2+"), weights=(85, 8, 5, 2))[0],
            }
            yield row


_FACILITY_NAMES = ("さくら", "みどり", "ひかり", "あおば", "ことぶき", "やまと", "ひまわり", "しらかば")
# (点数表 digit, name suffix, care kinds it bills)
_FACILITY_KINDS = (
    ("1", "内科クリニック", ("2",)),
    ("1", "総合病院", ("1", "2")),
    ("3", "歯科医院", ("3",)),
    ("4", "薬局", ("4",)),
    ("6", "訪問看護ステーション", ("5",)),
)
HIGH_COST_CAP = 80_100  # 高額療養費: about the 一般 monthly cap; the synthetic 窓口負担 never exceeds it


@dataclass(frozen=True, slots=True)
class _Facility:
    code: str
    name: str
    care_kinds: tuple[str, ...]


def _facilities(rng: random.Random, per_kind: int = 12) -> dict[str, list[_Facility]]:
    """A pool of facilities with valid codes, by the care kind they bill."""
    by_kind: dict[str, list[_Facility]] = {}
    for table, suffix, kinds in _FACILITY_KINDS:
        for _ in range(per_kind):
            digits = f"{rng.randint(1, 47):02d}{table}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
            facility = _Facility(with_check_digit(digits), rng.choice(_FACILITY_NAMES) + suffix, kinds)
            for kind in kinds:
                by_kind.setdefault(kind, []).append(facility)
    return by_kind


def _months(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    month = first.replace(day=1)
    while month <= last:
        yield month
        month = (month + dt.timedelta(days=32)).replace(day=1)


def expense_rows(people: Iterable[Person], seed: int = 0, *, today: dt.date | None = None,
                 share: float = 0.5, months: int = 15) -> Iterator[Row]:
    """医療費通知情報 for ``share`` of people: the ``months`` whole months before ``today``'s,
    within eligibility; in some months an outpatient clinic (often with a pharmacy), a dentist,
    an inpatient stay, home nursing for the old. ``patient_paid`` is the cost at the person's
    copay ratio, rounded to 10 yen, capped at ``HIGH_COST_CAP``."""
    rng = random.Random(seed ^ 0xE7E5)
    today = today or dt.date.today()
    pool = _facilities(rng)
    this_month = today.replace(day=1)
    start = this_month
    for _ in range(months):
        start = (start - dt.timedelta(days=1)).replace(day=1)
    for p in people:
        if rng.random() >= share:
            continue
        clinic, pharmacy, dentist = rng.choice(pool["2"]), rng.choice(pool["4"]), rng.choice(pool["3"])
        last = this_month - dt.timedelta(days=1)
        if p.lost_on is not None and p.lost_on < last:
            last = p.lost_on
        for month in _months(max(start, p.valid_from), last):
            ratio = p.copay_on(month)
            if p.elderly_ratio is not None and p.elderly_valid_from is not None and month >= p.elderly_valid_from:
                ratio = p.elderly_ratio
            length = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - month
            visits: list[tuple[_Facility, str, int, int]] = []
            if rng.random() < 0.35:
                days = rng.randint(1, 3)
                visits.append((clinic, "2", days, days * rng.randint(150, 900) * 10))
                if rng.random() < 0.7:
                    visits.append((pharmacy, "4", days, days * rng.randint(100, 1500) * 10))
            if rng.random() < 0.08:
                days = rng.randint(1, 2)
                visits.append((dentist, "3", days, days * rng.randint(200, 1200) * 10))
            if rng.random() < 0.01:
                days = rng.randint(2, min(20, length.days))
                visits.append((rng.choice(pool["1"]), "1", days, days * rng.randint(2000, 6000) * 10))
            if age(p.birth_date, month) >= 75 and rng.random() < 0.05:
                days = rng.randint(2, 8)
                visits.append((rng.choice(pool["5"]), "5", days, days * rng.randint(800, 1300) * 10))
            for facility, kind, days, total in visits:
                paid = min(HIGH_COST_CAP, round(total * ratio / 1000) * 10)
                yield {**_key_row(p), "service_month": month.strftime("%Y-%m"), "facility_code": facility.code,
                       "facility_name": facility.name, "care_kind": kind, "days": days, "total_cost": total,
                       "patient_paid": paid}


# (法別番号, monthly caps in yen, who): 54 難病, 52 小児慢性 (under 18), 21 精神通院 (自立支援),
# 88 a municipal child program (under 15, no self-pay) — the last is our rule: municipal 単独
# programs have no national 法別番号
_PROGRAMS = (
    ("54", (2_500, 5_000, 10_000, 20_000, 30_000), "adult"),
    ("52", (1_250, 2_500, 5_000, 10_000, 15_000), "child"),
    ("21", (2_500, 5_000, 10_000, 20_000), "adult"),
    ("88", (0,), "young"),
)


def _payer(law: str, prefecture: int, body: int) -> str:
    return with_check_digit(f"{law}{prefecture:02d}{body:03d}")


def _recipient(rng: random.Random) -> str:
    return with_check_digit(f"{rng.randint(0, 999_999):06d}")


def _fiscal_year(today: dt.date) -> tuple[dt.date, dt.date]:
    start = dt.date(today.year if today.month >= 4 else today.year - 1, 4, 1)
    return start, dt.date(start.year + 1, 3, 31)


def public_expense_rows(people: Iterable[Person], seed: int = 0, *, today: dt.date | None = None,
                        share: float = 0.02) -> Iterator[Row]:
    """公費負担医療 受給者証 for ``share`` of the people still insured: one program each that fits
    their age, valid for the fiscal year (from a later month for some)."""
    rng = random.Random(seed ^ 0x0C0F)
    today = today or dt.date.today()
    start, end = _fiscal_year(today)
    for p in people:
        if p.lost_on is not None or rng.random() >= share:
            continue
        years = age(p.birth_date, today)
        who = ("child", "young") if years < 15 else ("child",) if years < 18 else ("adult",)
        fits = [g for g in _PROGRAMS if g[2] in who]
        law, caps, _who = rng.choice(fits)
        valid_from = max(start, p.valid_from, start.replace(month=rng.choice((4, 4, 4, 7, 10))))
        yield {"payer_number": _payer(law, 13, rng.randint(1, 3)), "recipient_number": _recipient(rng),
               **_key_row(p), "valid_from": valid_from.isoformat(), "valid_to": end.isoformat(),
               "monthly_cap": rng.choice(caps)}


@dataclass(frozen=True, slots=True)
class WelfareOffice:
    code: str  # 福祉事務所 code (6 digits, our rule)
    payer_number: str  # its 公費負担者番号 (法別番号 12)


def welfare_offices(n: int = 3, prefecture: int = 13) -> tuple[WelfareOffice, ...]:
    return tuple(WelfareOffice(f"{prefecture:02d}{i + 1:04d}", _payer("12", prefecture, i + 1)) for i in range(n))


def assistance_rows(n_recipients: int, seed: int = 0, *, today: dt.date | None = None, months: int = 3,
                    offices: tuple[WelfareOffice, ...] | None = None, not_delegated: float = 0.1) -> Iterator[Row]:
    """医療扶助: ``n_recipients`` 生活保護 recipients (not insured) of ``offices``, each with a 医療券
    at a clinic and mostly a 調剤券 at a pharmacy for each of the ``months`` months up to
    ``today``'s; ``not_delegated`` of them lack the current month (未委託), a few ended mid-month."""
    rng = random.Random(seed ^ 0x1212)
    today = today or dt.date.today()
    pools = _pools(seed)
    facilities = _facilities(rng)
    offices = offices or welfare_offices()
    this_month = today.replace(day=1)
    first = this_month
    for _ in range(months - 1):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    for _ in range(n_recipients):
        office = rng.choice(offices)
        sex = rng.choice("12")
        last = rng.choice(pools.last)
        given = rng.choice(pools.male if sex == "1" else pools.female)
        birth = today - dt.timedelta(days=rng.randint(20 * 365, 90 * 365))
        person = {"office_code": office.code, "payer_number": office.payer_number,
                  "recipient_number": _recipient(rng), "name": f"{last[0]}{IDEOGRAPHIC_SPACE}{given[0]}",
                  "name_kana": f"{last[1]}{IDEOGRAPHIC_SPACE}{given[1]}", "birth_date": birth.isoformat(), "sex": sex}
        clinic, pharmacy = rng.choice(facilities["2"]), rng.choice(facilities["4"])
        late = rng.random() < not_delegated
        for month in _months(first, this_month):
            if late and month == this_month:
                continue
            end = (month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
            if rng.random() < 0.02:
                end = month + dt.timedelta(days=rng.randint(5, 20))  # 廃止 mid-month
            tickets = [("1", clinic)] + ([("2", pharmacy)] if rng.random() < 0.7 else [])
            for kind, facility in tickets:
                row: Row = {**person, "month": month.strftime("%Y-%m"), "ticket_kind": kind,
                            "facility_code": facility.code, "valid_from": month.isoformat(),
                            "valid_to": end.isoformat()}
                if rng.random() < 0.2:
                    row["self_pay"] = rng.choice((1000, 3000, 8000))  # 本人支払額
                yield row


# ---------------------------------------------------------------- writers


def _cell(value: str | int | float | list[str]) -> str:
    if isinstance(value, list):
        return "|".join(value)
    return str(value)


def _open_text(path: Path, encoding: str) -> IO[str]:
    # CP932 files come from Windows batch jobs: CRLF. csv writes the line ends itself.
    return path.open("w", encoding=encoding, newline="")


def write_csv(path: Path | str, header: tuple[str, ...], rows: Iterable[Row], *,
              encoding: str = "utf-8") -> int:
    """Write rows as an insurer CSV; ``encoding`` utf-8, utf-8-sig (BOM) or cp932. Returns rows."""
    path = Path(path)
    cp932 = encoding.replace("_", "").replace("-", "").lower() in ("cp932", "shiftjis", "sjis", "mskanji")
    count = 0
    with _open_text(path, encoding) as fh:
        writer = csv.writer(fh, lineterminator="\r\n" if cp932 else "\n")
        writer.writerow(header)
        for row in rows:
            cells = [_cell(row.get(c, "")) for c in header]
            if cp932:
                cells = [c.translate(_CP932_FALLBACK) for c in cells]
            writer.writerow(cells)
            count += 1
    return count


def write_ndjson(path: Path | str, rows: Iterable[Row]) -> int:
    """One JSON object per line, UTF-8; empty fields left out; ``disease_*`` as lists."""
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")
            count += 1
    return count


def write_eligibility_csv(path: Path | str, people: Iterable[Person], encoding: str = "utf-8") -> int:
    return write_csv(path, ELIGIBILITY_HEADER, eligibility_rows(people), encoding=encoding)


# 診療行為 in the shape of the 基本マスター's 診療行為コード (9 digits): (code, name, kind, inpatient
# share). Synthetic test data: the names are common ones, the codes need not match the master.
_PROCEDURES = (
    ("111000110", "初診料", "診療", 0.0),
    ("112007410", "再診料", "診療", 0.0),
    ("160000310", "末梢血液一般検査", "診療", 0.1),
    ("170000410", "単純撮影（イ）の写真診断", "診療", 0.1),
    ("190077410", "急性期一般入院料１", "診療", 1.0),
    ("150060010", "虫垂切除術（虫垂周囲膿瘍を伴わないもの）", "手術", 1.0),
    ("150243410", "水晶体再建術（眼内レンズを挿入する場合）（その他のもの）", "手術", 0.3),
    ("150154010", "内視鏡的大腸ポリープ・粘膜切除術（長径２ｃｍ未満）", "手術", 0.5),
)


def procedure_rows(people: Iterable[Person], seed: int = 0, *, today: dt.date | None = None,
                   share: float = 0.25) -> Iterator[Row]:
    """診療・手術 information from claims: for ``share`` of people, 1–3 procedures in the last
    5 years (within eligibility), at a 医科 facility, each day and code once."""
    rng = random.Random(seed ^ 0x9F0C)
    today = today or dt.date.today()
    clinics = [f.code for f in _facilities(rng)["2"]]
    start = _birthday(today, -5)
    for p in people:
        if rng.random() >= share:
            continue
        first = max(start, p.valid_from)
        last = p.lost_on if p.lost_on is not None and p.lost_on < today else today
        seen: set[tuple[str, str, str]] = set()
        for _ in range(rng.randint(1, 3)):
            code, name, kind, inpatient = rng.choice(_PROCEDURES)
            day, facility = _day(rng, first, last).isoformat(), rng.choice(clinics)
            if (day, facility, code) in seen:
                continue
            seen.add((day, facility, code))
            yield {**_key_row(p), "performed_on": day, "facility_code": facility, "procedure_code": code,
                   "procedure_name": name, "kind": kind, "inpatient": int(rng.random() < inpatient)}


def write_procedures_csv(path: Path | str, people: Iterable[Person], encoding: str = "utf-8", *,
                         seed: int = 0, today: dt.date | None = None) -> int:
    return write_csv(path, PROCEDURE_HEADER, procedure_rows(people, seed, today=today), encoding=encoding)


def write_procedures_ndjson(path: Path | str, people: Iterable[Person], *, seed: int = 0,
                            today: dt.date | None = None) -> int:
    return write_ndjson(path, procedure_rows(people, seed, today=today))


def write_medications_csv(path: Path | str, people: Iterable[Person], encoding: str = "utf-8", *,
                          seed: int = 0, today: dt.date | None = None) -> int:
    return write_csv(path, MEDICATION_HEADER, medication_rows(people, seed, today=today), encoding=encoding)


def write_checkups_csv(path: Path | str, people: Iterable[Person], encoding: str = "utf-8", *,
                       seed: int = 0, today: dt.date | None = None) -> int:
    return write_csv(path, CHECKUP_HEADER, checkup_rows(people, seed, today=today), encoding=encoding)


def write_expenses_csv(path: Path | str, people: Iterable[Person], encoding: str = "utf-8", *,
                       seed: int = 0, today: dt.date | None = None) -> int:
    return write_csv(path, EXPENSE_HEADER, expense_rows(people, seed, today=today), encoding=encoding)


def write_expenses_ndjson(path: Path | str, people: Iterable[Person], *, seed: int = 0,
                          today: dt.date | None = None) -> int:
    return write_ndjson(path, expense_rows(people, seed, today=today))


def write_eligibility_ndjson(path: Path | str, people: Iterable[Person]) -> int:
    return write_ndjson(path, eligibility_rows(people))


def write_medications_ndjson(path: Path | str, people: Iterable[Person], *, seed: int = 0,
                             today: dt.date | None = None) -> int:
    return write_ndjson(path, medication_rows(people, seed, today=today))


def write_checkups_ndjson(path: Path | str, people: Iterable[Person], *, seed: int = 0,
                          today: dt.date | None = None) -> int:
    return write_ndjson(path, checkup_rows(people, seed, today=today))


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.population",
                                     description="Write synthetic insurer files (eligibility, medications,"
                                                 " checkups, expenses, procedures, public_expense; assistance per"
                                                 " 福祉事務所).")
    parser.add_argument("--people", type=int, required=True, help="number of insured people")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--today", type=dt.date.fromisoformat, default=None,
                        help="reference date (YYYY-MM-DD; default today)")
    parser.add_argument("--encoding", default="utf-8", choices=("utf-8", "utf-8-sig", "cp932"))
    parser.add_argument("--format", dest="fmt", default="csv", choices=("csv", "ndjson", "both"))
    args = parser.parse_args(argv)
    today = args.today or dt.date.today()
    args.out.mkdir(parents=True, exist_ok=True)

    def people() -> Iterator[Person]:  # regenerated per file: constant memory for any N
        return iter_people(args.people, args.seed, today=today)

    recipients = max(1, args.people // 50)  # about 2 % of people are on 生活保護
    written: dict[str, int] = {}
    if args.fmt in ("csv", "both"):
        written["eligibility.csv"] = write_eligibility_csv(args.out / "eligibility.csv", people(),
                                                           args.encoding)
        written["medications.csv"] = write_medications_csv(args.out / "medications.csv", people(),
                                                           args.encoding, seed=args.seed, today=today)
        written["checkups.csv"] = write_checkups_csv(args.out / "checkups.csv", people(), args.encoding,
                                                     seed=args.seed, today=today)
        written["expenses.csv"] = write_expenses_csv(args.out / "expenses.csv", people(), args.encoding,
                                                     seed=args.seed, today=today)
        written["procedures.csv"] = write_procedures_csv(args.out / "procedures.csv", people(), args.encoding,
                                                         seed=args.seed, today=today)
        written["public_expense.csv"] = write_csv(args.out / "public_expense.csv", PUBLIC_EXPENSE_HEADER,
                                                  public_expense_rows(people(), args.seed, today=today),
                                                  encoding=args.encoding)
        # one file per 福祉事務所: each office's token writes its own recipients only
        for office in welfare_offices():
            rows = (r for r in assistance_rows(recipients, args.seed, today=today) if r["office_code"] == office.code)
            written[f"assistance_{office.code}.csv"] = write_csv(args.out / f"assistance_{office.code}.csv",
                                                                 ASSISTANCE_HEADER, rows, encoding=args.encoding)
    if args.fmt in ("ndjson", "both"):
        written["eligibility.ndjson"] = write_eligibility_ndjson(args.out / "eligibility.ndjson", people())
        written["medications.ndjson"] = write_medications_ndjson(args.out / "medications.ndjson", people(),
                                                                 seed=args.seed, today=today)
        written["checkups.ndjson"] = write_checkups_ndjson(args.out / "checkups.ndjson", people(),
                                                           seed=args.seed, today=today)
        written["expenses.ndjson"] = write_expenses_ndjson(args.out / "expenses.ndjson", people(),
                                                           seed=args.seed, today=today)
        written["procedures.ndjson"] = write_procedures_ndjson(args.out / "procedures.ndjson", people(),
                                                               seed=args.seed, today=today)
        written["public_expense.ndjson"] = write_ndjson(args.out / "public_expense.ndjson",
                                                        public_expense_rows(people(), args.seed, today=today))
        for office in welfare_offices():
            rows = (r for r in assistance_rows(recipients, args.seed, today=today) if r["office_code"] == office.code)
            written[f"assistance_{office.code}.ndjson"] = write_ndjson(args.out / f"assistance_{office.code}.ndjson",
                                                                       rows)
    for name, count in written.items():
        print(f"{args.out / name}: {count:,} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
