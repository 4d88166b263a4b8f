import pytest
from your_project.tkq import broker

from pathlib import Path
from your_project.path_tasks import modify_path  # added

@pytest.mark.anyio
async def test_modify_path():
    modified = await modify_path(Path.cwd())
    assert str(modified).endswith("taskiq.py")
