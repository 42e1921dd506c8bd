"""The control API's run actions (what the console uses): review, commands, incidents."""

from __future__ import annotations

import httpx

from omium.collector.server import RunningServer
from omium.examples.company_x import workflow as company_x
from omium.recovery import supervise
from omium.recovery.worker import Worker
from omium.sdk.remote_store import RemoteStore

AUTH = {"authorization": "Bearer test-token"}


def test_review_commands_and_incidents_over_http(server: RunningServer) -> None:
    store = RemoteStore(server.url, token="test-token")
    company_x.seed_customer(store, "h-1")
    outcome = supervise(company_x.onboard_customer, "h-1", "hallucination", run_id="h-1", store=store,
                        sleep=lambda s: None)  # fmt: skip
    assert outcome.status == "paused"
    url = f"{server.url}/v1/runs/h-1"

    assert httpx.post(f"{url}/review", json={"decision": "approve"}).status_code == 401
    refused = httpx.post(f"{url}/review", json={"decision": "edit", "edits": {"terms_generator.core_logic": "x"}},
                         headers=AUTH)  # fmt: skip
    assert refused.status_code == 422 and "forbidden edit" in refused.json()["error"]
    assert httpx.post(f"{url}/review", json={"decision": "maybe"}, headers=AUTH).status_code == 400
    missing = httpx.post(f"{server.url}/v1/runs/nope/review", json={"decision": "approve"}, headers=AUTH)
    assert missing.status_code == 404

    approved = httpx.post(
        f"{url}/review",
        json={
            "decision": "approve",
            "edits": {"terms_generator.prompt": company_x.FIXED_PROMPT},
            "reviewer": "dana",
        },
        headers=AUTH,
    )
    assert approved.status_code == 200 and approved.json()["result"]["status"] == "queued"
    assert httpx.post(f"{url}/review", json={"decision": "approve"}, headers=AUTH).status_code == 409
    (queued,) = httpx.get(f"{url}/commands", headers=AUTH).json()["result"]
    assert (queued["kind"], queued["status"]) == ("resume", "queued")
    bad = httpx.post(f"{url}/commands", json={"kind": "explode"}, headers=AUTH)
    assert bad.status_code == 400 and "a command is one of" in bad.json()["error"]

    Worker(store, {"onboard_customer": company_x.onboard_customer}, name="api-worker").run_until_idle()
    assert store.get_run("h-1").status == "completed"
    (incident,) = httpx.get(f"{url}/incidents", headers=AUTH).json()["result"]
    assert incident["trigger"] == "policy_violation"
    assert incident["stages"][0] == "detected" and incident["stages"][-1] == "completed"
    assert any(e["kind"] == "edited" and e["actor"] == "dana" for e in incident["events"])
    assert httpx.get(f"{server.url}/v1/runs/nope/incidents", headers=AUTH).status_code == 404
    store.close()
