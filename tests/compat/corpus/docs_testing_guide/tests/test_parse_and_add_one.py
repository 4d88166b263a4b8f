import pytest  # added
from your_project.tasks import parse_and_add_one  # added


@pytest.mark.anyio
async def test_add_one():
    assert await parse_and_add_one("11") == 12
