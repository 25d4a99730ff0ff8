"Shared pytest fixtures: the real datasets in ../shared/data, skipped cleanly when absent."
import pytest
from llm_augment.data import shared_data


@pytest.fixture
def shared():
    "Return a function that finds a shared dataset's CSV, or skips the test with the reason."
    def find(name):
        try: return shared_data(name)
        except FileNotFoundError as e: pytest.skip(str(e))
    return find
