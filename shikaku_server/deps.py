"""Every FastAPI dependency alias in one place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shikaku_server.auth.service import Principal, hash_token, resolve_token
from shikaku_server.cache import Cache
from shikaku_server.config import Settings
from shikaku_server.errors import UnauthorizedError, UnavailableError
from shikaku_server.state import AppState


async def get_state(request: Request) -> AppState:  # async: no thread hop for a dict lookup
    state: AppState = request.app.state.shikaku
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


async def get_cache(state: StateDep) -> Cache:
    return state.cache


def get_db(state: StateDep) -> Iterator[Session]:
    """One transaction per request, owned here: routes and services only ``flush()``.

    It commits when the route returns and before the answer is sent: ``SessionDep`` declares
    ``scope="function"``, so FastAPI (0.121+) runs the code after ``yield`` once the route has
    returned and its response is built, and before a byte of it leaves. (With the default
    ``"request"`` scope that code runs after the response is sent: a client could act on an
    answer whose write was not committed yet, or never.) A commit that fails answers
    ``503 unavailable`` and nothing of the route's answer; an error raised by the route rolls back."""
    session = state.session_factory()
    try:
        yield session
        try:
            session.commit()
        except SQLAlchemyError as exc:
            raise UnavailableError("the database did not commit this request: nothing was saved") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db, scope="function")]
CacheDep = Annotated[Cache, Depends(get_cache)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("an Authorization: Bearer <token> header is required")
    return token.strip()


async def get_principal(request: Request, state: StateDep) -> Principal:
    """Resolved tokens are cached per process (async: the hit path costs no thread hop)."""
    token = bearer_token(request)
    token_hash = hash_token(token)
    principal = state.principals.get(token_hash)
    if principal is None:
        generation = state.principals.generation  # a revocation meanwhile: not cached
        principal = await state.transactions.read(lambda session: resolve_token(session, token))
        state.principals.put(token_hash, principal, generation)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
