import pytest  # added: the guide's snippet uses pytest without importing it


@pytest.fixture
def anyio_backend():
    return 'asyncio'
