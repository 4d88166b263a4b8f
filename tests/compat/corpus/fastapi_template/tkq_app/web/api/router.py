from fastapi.routing import APIRouter
from tkq_app.web.api import echo
from tkq_app.web.api import dummy
from tkq_app.web.api import redis
from tkq_app.web.api import monitoring

api_router = APIRouter()
api_router.include_router(monitoring.router)
api_router.include_router(echo.router, prefix="/echo", tags=["echo"])
api_router.include_router(dummy.router, prefix="/dummy", tags=["dummy"])
api_router.include_router(redis.router, prefix="/redis", tags=["redis"])
