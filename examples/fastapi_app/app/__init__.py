"""A small FastAPI service with Conveyor tasks, laid out as a backend team lays one out.

- ``settings``: configuration from the environment;
- ``models``: the SQLAlchemy tables;
- ``db``: the engine's lifespan and ``get_db_session``, shared by routes and tasks;
- ``tasks``: the Conveyor app and its tasks (``conveyor worker app.tasks:conveyor_app``);
- ``main``: the FastAPI app (``uvicorn app.main:api``);
- ``__main__``: ``python -m app`` runs both, for development.
"""
