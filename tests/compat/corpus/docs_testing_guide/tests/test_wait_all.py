import pytest  # added
from your_project.tasks import parse_int_later  # added
from your_project.tkq import broker

@pytest.mark.anyio
async def test_add_one():
    # Call the function that triggers the async task
    assert await parse_int_later("11") == 1
    await broker.wait_all()  # Waits for all tasks to complete
    # At that time we can guarantee that all sent tasks
    # have been completed and do all the assertions.
