"""The API: create users, enqueue work, read a task's status. Serve it with

    uvicorn app.main:api

``lifespan(conveyor_app, database)`` connects the broker when the API starts (so routes
can enqueue), then opens the database; it closes both when the API stops.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from app.db import DbSession, database
from app.models import Report, SentEmail, User
from app.tasks import conveyor_app, generate_embedding, process_report, send_email
from conveyor import TaskNotFound, TaskStatus
from conveyor.integrations.fastapi import lifespan

api = FastAPI(title="Conveyor FastAPI example", lifespan=lifespan(conveyor_app, database))


class UserIn(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    name: str = Field(min_length=1, max_length=200)


class UserOut(BaseModel):
    id: int
    email: str
    name: str


class Enqueued(BaseModel):
    task_id: str


class EmbeddingIn(BaseModel):
    text: str = Field(min_length=1, max_length=10_000)


class ReportIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class ReportEnqueued(Enqueued):
    report_id: int


class TaskError(BaseModel):
    type: str
    message: str


class TaskOut(BaseModel):
    task_id: str
    status: TaskStatus  # queued, running, retrying, succeeded, failed, dead
    attempts: int
    progress: float | None = None  # 0..1 while running, if the task reports it
    progress_message: str | None = None
    result: Any = None  # the return value, once succeeded
    error: TaskError | None = None  # once failed or dead


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@api.post("/users", status_code=201)
async def create_user(body: UserIn, db: DbSession) -> UserOut:
    user = User(email=body.email, name=body.name)
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:
        raise HTTPException(409, f"a user with email {body.email!r} exists") from None
    return UserOut(id=user.id, email=user.email, name=user.name)


@api.post("/users/{user_id}/welcome-email", status_code=202)
async def welcome_email(user_id: int, db: DbSession) -> Enqueued:
    user = await db.get(User, user_id)
    if user is None:
        raise HTTPException(404, f"no user {user_id}")
    email = SentEmail(user_id=user.id, to_address=user.email, subject=f"Welcome, {user.name}!")
    db.add(email)
    await db.flush()  # the email's id
    # the row and its task commit together: inside this transaction on PostgreSQL,
    # published right after the commit on other brokers; a rollback drops both
    handle = await send_email.with_options(session=db).kiq(email.id)
    await db.commit()
    return Enqueued(task_id=handle.task_id)


@api.post("/embeddings", status_code=202)
async def embed(body: EmbeddingIn) -> Enqueued:
    handle = await generate_embedding.kiq(body.text)
    return Enqueued(task_id=handle.task_id)


@api.post("/reports", status_code=202)
async def create_report(body: ReportIn, db: DbSession) -> ReportEnqueued:
    report = Report(title=body.title)
    db.add(report)
    await db.commit()  # before enqueueing, so the worker finds the row
    handle = await process_report.kiq(report.id)
    return ReportEnqueued(task_id=handle.task_id, report_id=report.id)


@api.get("/tasks/{task_id}")
async def task_status(task_id: str) -> TaskOut:
    try:
        state = await conveyor_app.handle(task_id).status()
    except TaskNotFound as exc:  # never enqueued, or its result expired
        raise HTTPException(404, str(exc)) from None
    result = state.result
    error = result.error if result is not None else None
    return TaskOut(
        task_id=state.task_id,
        status=state.status,
        attempts=state.attempts,
        progress=state.progress,
        progress_message=state.progress_message,
        result=result.return_value if result is not None else None,
        error=TaskError(type=error.type, message=error.message) if error is not None else None,
    )
