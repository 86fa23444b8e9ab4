import subprocess
import sys

import pytest

from classifier.artifact import artifact_version
from classifier.labels import LABELS


@pytest.mark.parametrize("role", ["admin", "operator", "viewer", "api_user"])
def test_model_card_is_served_to_any_valid_key(client, make_key, role):
    """GET /v1/model returns the artifact's version, labels, scores and card."""
    response = client.get("/v1/model", headers=make_key.headers(role))

    assert response.status_code == 200
    body = response.get_json()
    assert body["version"] == artifact_version()
    assert body["labels"] == list(LABELS)
    assert body["scores"]["test"]["n"] == 12941
    assert "research on humanitarian computing only" in body["card"]
    assert body["version"] in body["card"]


def test_model_card_needs_a_key(client):
    """Without a key the card is refused."""
    assert client.get("/v1/model").status_code == 401


def test_web_process_never_imports_torch(database_url):
    """Building the API and serving the model card does not load torch.

    Checked in a fresh interpreter: other tests in this process load it.
    """
    code = (
        "import sys, app\n"
        f"a = app.create_app({{'DATABASE_URL': {database_url!r}}})\n"
        "from storage import db; db.create_all()\n"
        "from app.keys.service import create\n"
        "with a.app_context():\n"
        "    _, key = create(db.session, name='t', role='viewer', pepper='p')\n"
        "a.config['KEY_PEPPER'] = 'p'\n"
        "auth = {'Authorization': 'Bearer ' + key}\n"
        "r = a.test_client().get('/v1/model', headers=auth)\n"
        "print(r.status_code, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert out.stdout.strip().splitlines()[-1] == "200 False False"
