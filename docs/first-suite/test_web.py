from urllib.request import urlopen

import pytest


@pytest.mark.testserver("web")
def test_home_page(testserver):
    with urlopen(testserver.url(8080), timeout=10) as response:
        assert response.status == 200
        assert b"hello from a test server" in response.read()
