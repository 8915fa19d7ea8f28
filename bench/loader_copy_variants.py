"""What the schema costs a bulk load: COPY of a file's persons into ``insured`` +
``eligibility_period`` with and without each index and the foreign key (PostgreSQL).

    PYTHONPATH=. .venv/bin/python -m bench.loader_copy_variants FILE [--variants today,nofk,...]

The rows are rendered once by the server's own code (``bench.loader_bench.project_rows``: the
first ``add`` of each person) and each variant COPYs them into a freshly migrated scratch database
(``--db``) in one transaction. Prints wall seconds and the **CPU seconds of the PostgreSQL
backend** per step (from /proc: on a loaded machine the wall time says little, the backend's CPU
time is what the schema costs). Variants:

- ``raw``: the file itself into a plain table of text columns (the floor);
- ``today``: the schema as migrated (key index, primary keys, two period indexes, foreign key);
- ``nofk``: without the foreign key (added back after, one set-based check);
- ``nofacts`` / ``nocurrent``: without ``ix_eligibility_period_facts`` / ``_current``;
- ``after``: both period indexes and the foreign key built after the data (a first load);
- ``bare``: no index, no key and no foreign key at all: the heaps only;
- ``staging``: periods COPYed into a TEMP table, then one ``INSERT … SELECT`` (set-based).
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2  # type: ignore[import-untyped]  # no stubs installed

from bench.common import PG, fresh_database
from bench.loader_bench import project_rows
from shikaku_server.migrate import upgrade
from shikaku_server.upload.bulk import INSURED_COLUMNS
from shikaku_server.upload.service import _ROW_COLUMNS
from testbed.population import ELIGIBILITY_HEADER

_NOT_NULL = "name, name_kana, name_norm, sex, personal_family, card_classification, upload_id"
_PERIODS = f"COPY {{}} ({', '.join(_ROW_COLUMNS)}) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL ({_NOT_NULL}))"
_INSURED = (
    f"COPY insured (id, {', '.join(INSURED_COLUMNS)}) FROM STDIN "
    "WITH (FORMAT csv, FORCE_NOT_NULL (symbol, symbol_norm))"
)
_FK = "fk_eligibility_period_insured_id_insured"
_BEFORE = {
    "today": "",
    "nofk": f"ALTER TABLE eligibility_period DROP CONSTRAINT {_FK}",
    "nofacts": "DROP INDEX ix_eligibility_period_facts",
    "nocurrent": "DROP INDEX ix_eligibility_period_current",
    "after": "DROP INDEX ix_eligibility_period_facts; DROP INDEX ix_eligibility_period_current; "
    f"ALTER TABLE eligibility_period DROP CONSTRAINT {_FK}",
    "bare": "DROP INDEX ix_eligibility_period_facts; DROP INDEX ix_eligibility_period_current; "
    f"ALTER TABLE eligibility_period DROP CONSTRAINT {_FK}; "
    "ALTER TABLE eligibility_period DROP CONSTRAINT pk_eligibility_period; "
    "ALTER TABLE insured DROP CONSTRAINT uq_insured_insurer_number_symbol_norm_number_norm_branch",
}
_AFTER = {
    "nofk": [f"ALTER TABLE eligibility_period ADD CONSTRAINT {_FK} FOREIGN KEY (insured_id) REFERENCES insured (id)"],
    "after": [
        "CREATE INDEX ix_eligibility_period_current ON eligibility_period (insured_id, superseded_by)",
        "CREATE INDEX ix_eligibility_period_facts ON eligibility_period (birth_date, name_norm)",
        f"ALTER TABLE eligibility_period ADD CONSTRAINT {_FK} FOREIGN KEY (insured_id) REFERENCES insured (id)",
    ],
}


def run(variant: str, db: str, file: Path, insured: str, periods: str) -> dict[str, Any]:
    url = fresh_database(db)
    upgrade(url)
    conn = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
    steps: dict[str, tuple[float, float]] = {}
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()

        def cpu() -> float:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        def step(name: str, work: Callable[[], Any]) -> None:
            c, t = cpu(), time.perf_counter()
            work()
            steps[name] = (round(time.perf_counter() - t, 2), round(cpu() - c, 2))

        if variant == "raw":
            cur.execute(f"CREATE TABLE raw ({', '.join(f'{c} text' for c in ELIGIBILITY_HEADER)})")
            with file.open(encoding="utf-8") as fh:
                step("COPY the file", lambda: cur.copy_expert("COPY raw FROM STDIN WITH (FORMAT csv, HEADER true)", fh))
        elif variant == "staging":
            cur.execute("CREATE TEMP TABLE stage (LIKE eligibility_period INCLUDING DEFAULTS) ON COMMIT DROP")
            step("COPY insured", lambda: cur.copy_expert(_INSURED, io.StringIO(insured)))
            step("COPY periods into TEMP", lambda: cur.copy_expert(_PERIODS.format("stage"), io.StringIO(periods)))
            columns = ", ".join(_ROW_COLUMNS)
            insert = f"INSERT INTO eligibility_period ({columns}) SELECT {columns} FROM stage ORDER BY insured_id"  # noqa: S608
            step("INSERT … SELECT", lambda: cur.execute(insert))
        else:
            if _BEFORE[variant]:
                cur.execute(_BEFORE[variant])
            step("COPY insured", lambda: cur.copy_expert(_INSURED, io.StringIO(insured)))
            step("COPY periods", lambda: cur.copy_expert(_PERIODS.format("eligibility_period"), io.StringIO(periods)))
            for sql in _AFTER.get(variant, []):
                step(sql.split(" ON ")[0].split(" FOREIGN")[0][:40], lambda sql=sql: cur.execute(sql))  # type: ignore[misc]
        step("commit", conn.commit)
    finally:
        conn.close()
    return {
        "variant": variant,
        "steps": steps,
        "wall_s": round(sum(w for w, _ in steps.values()), 2),
        "backend_cpu_s": round(sum(c for _, c in steps.values()), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("file", type=Path)
    ap.add_argument("--variants", default="raw,today,nofk,nofacts,nocurrent,after,bare,staging")
    ap.add_argument("--db", default="shikaku_bench_variants")
    args = ap.parse_args()
    assert PG.startswith("postgresql")
    insured, periods, persons = project_rows(args.file)
    print(f"{persons:,} persons of {args.file}")
    for variant in args.variants.split(","):
        r = run(variant, args.db, args.file, insured, periods)
        print(f"{variant:10} backend CPU {r['backend_cpu_s']:5.2f} s  wall {r['wall_s']:6.2f} s  "
              f"(wall, CPU) per step: {r['steps']}", flush=True)


if __name__ == "__main__":
    main()
