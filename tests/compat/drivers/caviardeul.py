"""caviardeul (a Django game): its taskiq tests (InMemoryBroker(await_inplace=True) under
pytest, PostgreSQL), then production-like: ``taskiq worker worker:broker`` and ``taskiq
scheduler worker:scheduler`` on Redis firing its interval schedules."""

from __future__ import annotations

from tests.compat.harness import Run

TESTS = [
    f"test_daily_article::{case}"
    for case in (
        "TestCheckUpcomingDailyArticle::test_no_upcoming_article",
        "TestCheckUpcomingDailyArticle::test_check_upcoming_article_valid",
        "TestCheckUpcomingDailyArticle::test_check_upcoming_article_error",
        "TestCheckUpcomingDailyArticle::test_check_upcoming_article_redirect",
        "TestCheckRandomDailyArticle::test_check_random_article",
        "TestCheckRandomDailyArticle::test_check_random_article_error",
        "TestCheckRandomDailyArticle::test_check_random_article_no_article",
    )
]
CHECKS = [
    *TESTS,
    "database_migrates",
    "worker_starts",
    "direct_kiq_sent",
    "direct_kiq_runs",
    "scheduler_starts",
    "interval_schedules_fire",
]
SERVICES = frozenset({"redis", "postgres"})
LOCKS: tuple[str, ...] = ()
COST = 25
UPCOMING = "No upcoming article found"  # what the tasks log on an empty database
RANDOM = "No article found"


def _env(run: Run) -> dict[str, str]:
    # backend/.env.example's variables, for this machine
    return {
        "DJANGO_SETTINGS_MODULE": "caviardeul.settings",
        "HOST_NAME": "localhost",
        "DJANGO_SECRET_KEY": "compat-test",
        "POSTGRES_DB": run.pg_database or "",
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "",
        "POSTGRES_HOST": "localhost",
        "REDIS_HOST": "localhost",
        "SMTP_HOSTNAME": "localhost",
        "SMTP_PORT": "465",
        "SMTP_LOGIN": "apikey",
        "SMTP_PASSWORD": "compat",
        "EMAIL_FROM": "compat@example.com",
    }


def drive(run: Run) -> None:
    run.env_extra.update(_env(run))
    run.pytest("pytest", ["caviardeul/tests/tasks"], TESTS, timeout=180)
    with run.check("database_migrates"):
        done = run.run("migrate", ["python", "manage.py", "migrate", "--no-input"], timeout=120)
        assert done.returncode == 0, done.stdout[-3000:]
    with run.check("worker_starts"):
        worker = run.serve("worker", ["taskiq", "worker", "worker:broker"])
    if not run.results["worker_starts"].ok:
        run.fill_missing("not reached: the worker did not start")
        return
    run.probe("probe_kiq.py", ["direct_kiq_sent"], timeout=60)
    with run.check("direct_kiq_runs"):
        assert run.results["direct_kiq_sent"].ok, "not reached: the task was not sent"
        worker.wait_for(UPCOMING, timeout=30)
    with run.check("scheduler_starts"):
        run.serve("scheduler", ["taskiq", "scheduler", "worker:scheduler"])
    with run.check("interval_schedules_fire"):
        assert run.results["scheduler_starts"].ok, "not reached: the scheduler did not start"
        # both tasks have schedule=[{"interval": timedelta(hours=...)}]: taskiq's scheduler
        # sends an interval schedule when it starts, then every interval
        worker.wait_for(RANDOM, timeout=30)
        # the direct run printed it once; the scheduled run prints it again
        worker.wait_for(
            UPCOMING, timeout=30, times=2, what="the scheduled check_upcoming_daily_article"
        )
