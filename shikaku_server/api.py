"""Every router, mounted in one place."""

from __future__ import annotations

from fastapi import FastAPI

from shikaku_server import health
from shikaku_server.assistance import views as assistance
from shikaku_server.batch import views as batch
from shikaku_server.card import views as card
from shikaku_server.clinical import views as clinical
from shikaku_server.consent import views as consent
from shikaku_server.eligibility import views as eligibility
from shikaku_server.emergency import views as emergency
from shikaku_server.fhir import views as fhir
from shikaku_server.homecare import views as homecare
from shikaku_server.me import views as me
from shikaku_server.upload import views as upload


def mount(app: FastAPI) -> None:
    for router in (
        health.router,
        eligibility.router,
        batch.router,
        upload.router,
        card.router,
        consent.router,
        clinical.router,
        homecare.router,
        me.router,
        emergency.router,
        fhir.router,
        assistance.router,
    ):
        app.include_router(router)
