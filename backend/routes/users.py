from __future__ import annotations

from fastapi import APIRouter, Request, status

from backend.deps import CurrentUser, HashingDep, SessionDep, SignupLimitsDep
from backend.login_limits import client_address
from backend.openapi import AUTH_ERRORS, COMMON_ERRORS, error_responses
from backend.services import users
from shared.schemas import UserCreate, UserOut

router = APIRouter(prefix="/users", tags=["users"], responses=error_responses(*COMMON_ERRORS))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=error_responses(409, 429),
)
async def sign_up(
    data: UserCreate,
    session: SessionDep,
    hashing: HashingDep,
    limits: SignupLimitsDep,
    request: Request,
) -> UserOut:
    """Create a user. The email is stored in lower case; the password is hashed with argon2.

    Sign-ups are limited per client address (`SIGNUP_ADDRESS_BURST`, then
    `SIGNUP_ADDRESS_PER_HOUR`): `429 rate_limited` with `details.retry_after_seconds`.
    """
    limits.take(client_address(request))
    user = await users.create_user(session, hashing, data)
    return UserOut(id=user.id, email=user.email, created_at=user.created_at)


@router.get("/me", response_model=UserOut, responses=error_responses(*AUTH_ERRORS))
async def who_am_i(user: CurrentUser) -> UserOut:
    """The user the credentials belong to."""
    return UserOut(id=user.id, email=user.email, created_at=user.created_at)
