"""Sign-up and login: the rules about users."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.security import PasswordHashing
from shared.errors import ErrorCode, TaskgateError
from shared.models import User
from shared.schemas import UserCreate, storable


async def create_user(session: AsyncSession, hashing: PasswordHashing, data: UserCreate) -> User:
    password_hash = await hashing.hash(data.password)
    user = User(email=data.email.lower(), password_hash=password_hash)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise TaskgateError(
            ErrorCode.CONFLICT, "a user with this email already exists", {"field": "email"}
        ) from None
    return user


async def authenticate(
    session: AsyncSession, hashing: PasswordHashing, email: str, password: str
) -> User:
    email = email.strip().lower()
    # Text PostgreSQL cannot take (NUL, lone surrogates) names no user; don't send it.
    user = (
        await session.scalar(select(User).where(User.email == email)) if _storable(email) else None
    )
    # Hand the connection back before the hash, which may wait for a slot: logins queued
    # behind the hashing cap must not hold the pool that task requests need.
    await session.commit()
    ok = await hashing.verify(user.password_hash if user else None, password)
    if user is None or not ok:
        raise TaskgateError(ErrorCode.UNAUTHORIZED, "email or password is wrong")
    return user


def _storable(text: str) -> bool:
    try:
        storable(text)
    except ValueError:
        return False
    return True
