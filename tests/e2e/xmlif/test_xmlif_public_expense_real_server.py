"""公費負担医療 (``public_expenses``) rendered into the eligibility XML results against the real
server, on both backends, with a generated population and its 受給者証 (``public_expense_rows``):
in the single result and in the 一括照会 download under the 限度額 consent flag, never without it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from lxml import etree

from clinic_terminal.client import ServerClient
from clinic_terminal.xmlif.schema import validation_errors
from shikaku_server.auth.service import add_insurer, add_payer
from shikaku_server.database import transaction
from shikaku_server.eligibility.service import today_jst
from testbed import xmlif_server as t
from testbed.population import (
    ELIGIBILITY_HEADER,
    PUBLIC_EXPENSE_HEADER,
    eligibility_rows,
    generate_population,
    public_expense_rows,
)
from tests.factories import csv_bytes
from tests.folder_terminal import folder_terminal
from tests.integration.test_eligibility_api import upload

TODAY = today_jst()


def search(row: dict[str, Any], birth: dt.date, flag: str) -> str:
    return (
        "<QualificationConfirmSearchInfo>"
        f"<InsurerNumber>{str(row['insurer_number']).rjust(8)}</InsurerNumber>"
        f"<InsuredCardSymbol>{row['symbol']}</InsuredCardSymbol>"
        f"<InsuredIdentificationNumber>{row['number']}</InsuredIdentificationNumber>"
        f"<InsuredBranchNumber>{row['branch']}</InsuredBranchNumber>"
        f"<Birthdate>{birth:%Y%m%d}</Birthdate>"
        f"<LimitApplicationCertificateRelatedConsFlg>{flag}</LimitApplicationCertificateRelatedConsFlg>"
        "</QualificationConfirmSearchInfo>"
    )


def header() -> str:
    return (
        f"<MessageHeader><QualificationConfirmationDate>{TODAY:%Y%m%d}</QualificationConfirmationDate>"
        f"<MedicalInstitutionCode>{t.FACILITY_CODE}</MedicalInstitutionCode></MessageHeader>"
    )


def test_public_expenses_in_single_and_bulk_results_under_the_limit_consent(
    client: TestClient, session_factory: Any, tokens: dict[str, str], tmp_path: Path
) -> None:
    population = generate_population(60, seed=17, today=TODAY)
    certificates = [
        dict(r) for r in public_expense_rows(population.people, 17, today=TODAY, share=0.5)
        if str(r["valid_from"]) <= TODAY.isoformat() <= str(r["valid_to"])
    ]
    assert certificates
    with transaction(session_factory) as s:
        insurer = add_insurer(s, numbers=sorted({i.number for i in population.insurers}), name="生成保険者")
        payer = add_payer(s, numbers=sorted({str(r["payer_number"]) for r in certificates}))
    assert upload(client, insurer, csv_bytes(list(ELIGIBILITY_HEADER), list(eligibility_rows(population.people))))[
        "rejected"] == 0
    out = upload(client, payer, csv_bytes(list(PUBLIC_EXPENSE_HEADER), certificates), kind="public_expense")
    assert out["rejected"] == 0, out
    row = certificates[0]

    def key(r: dict[str, Any]) -> tuple[str, ...]:
        return tuple(str(r[k]) for k in ("insurer_number", "symbol", "number", "branch"))

    person = next(p for p in population.people if (p.insurer_number, p.symbol, p.number, p.branch) == key(row))

    root = tmp_path / "oqs"
    with folder_terminal(
        client, tokens["reception"], root, server_client=ServerClient, encoding="shift_jis"
    ) as (watcher, _):
        req = root / "req"
        for name, flag in (("OQSsiquc01req_p1", "1"), ("OQSsiquc01req_p0", "0")):
            body = f"<MessageBody>{search(row, person.birth_date, flag)}</MessageBody>"
            (req / f"{name}.xml").write_bytes(t.document(body, "Shift_JIS", header=header()))
        (req / "OQSmuquc01req_p.xml").write_bytes(t.document(
            f"<MessageBody>{search(row, person.birth_date, '1')}{search(row, person.birth_date, '0')}</MessageBody>",
            header=header()))
        assert watcher.scan() == 3

        data = (root / "res" / "OQSsiquc01res_p1.xml").read_bytes()
        assert validation_errors("OQSsiquc01res", data) == []
        doc = etree.fromstring(data)
        assert doc.findtext(".//QualificationValidity") == "1"
        infos = doc.findall(".//MedicalSubsidyCertificateList/MedicalSubsidyCertificateInfo")
        expected = sorted(
            (str(c["payer_number"]), str(c["recipient_number"]), str(c["monthly_cap"]))
            for c in certificates if key(c) == key(row)
        )
        shown = sorted((i.findtext("MedicalSubsidyInsurerNumber"), i.findtext("MedicalSubsidyRecipientNumber"),
                        i.findtext("MaxCopaymentAmount")) for i in infos)
        assert shown == expected
        assert infos[0].findtext("MedicalSubsidyValidEndDate") == str(row["valid_to"]).replace("-", "")
        # without the 限度額 consent: not there
        data = (root / "res" / "OQSsiquc01res_p0.xml").read_bytes()
        assert validation_errors("OQSsiquc01res", data) == []
        assert etree.fromstring(data).find(".//MedicalSubsidyCertificateList") is None

        reception = etree.fromstring((root / "res" / "OQSmuquc01res_p.xml").read_bytes()).findtext(".//ReceptionNumber")
        assert reception
        (req / "OQSmuquc02req_p.xml").write_bytes(t.bulk_download(reception))
        assert watcher.scan() == 1
        data = (root / "res" / "OQSmuquc02res_p.xml").read_bytes()
        units = etree.fromstring(data).findall(".//BulkConfirmUnit")
        if not units:  # the batch was not done yet: ask again (a new file name)
            (req / "OQSmuquc02req_p2.xml").write_bytes(t.bulk_download(reception))
            assert watcher.scan() == 1
            data = (root / "res" / "OQSmuquc02res_p2.xml").read_bytes()
            units = etree.fromstring(data).findall(".//BulkConfirmUnit")
        assert validation_errors("OQSmuquc02res", data) == []
        assert [len(u.findall(".//MedicalSubsidyCertificateInfo")) for u in units] == [len(expected), 0]
