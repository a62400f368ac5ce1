from __future__ import annotations

from fastapi import APIRouter, status

from backend.deps import SessionDep
from backend.services import users
from shared.schemas import UserCreate, UserOut

router = APIRouter(prefix="/users", tags=["users"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def sign_up(data: UserCreate, session: SessionDep) -> UserOut:
    user = await users.create_user(session, data)
    return UserOut(id=user.id, email=user.email, created_at=user.created_at)
