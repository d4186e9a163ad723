"""A minimal chat-service client for textguard: score each message before showing it.

    TEXTGUARD_URL=http://127.0.0.1:8000 TEXTGUARD_API_KEY=tg_... python serving/example_client.py

It shows what a production caller needs: one pooled HTTP client (keep-alive), a short timeout, retries
on 429/503 that honour Retry-After, and a fail-closed decision when textguard cannot answer in time
(hold the message for review rather than show it unchecked; choose what fits your product).
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

RETRY_STATUSES = {429, 503}
MAX_ATTEMPTS = 3


class TextguardClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 2.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def score(self, messages: list[dict[str, Any]], policy: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": messages}
        if policy:
            body["policy"] = policy
        for attempt in range(1, MAX_ATTEMPTS + 1):
            response = self._http.post("/v1/score", json=body)
            if response.status_code not in RETRY_STATUSES or attempt == MAX_ATTEMPTS:
                break
            time.sleep(min(float(response.headers.get("Retry-After", "1")), 5.0))
        if response.status_code != 200:
            error = response.json().get("error", {})
            raise RuntimeError(
                f"textguard {response.status_code} {error.get('type')}: {error.get('message')}"
            )
        return dict(response.json())


def decide(client: TextguardClient, message_id: str, text: str, meeting_id: str) -> str:
    """allow / review / block for one chat message; 'review' (fail closed) if textguard is unavailable."""
    try:
        result = client.score([{"id": message_id, "text": text, "meeting_id": meeting_id, "source": "chat"}])
    except (httpx.HTTPError, RuntimeError) as exc:
        print(f"{message_id}: textguard unavailable ({exc}); holding for review")
        return "review"
    decision = result["results"][0]
    version = result["model"]["version"]
    print(f"{message_id}: {decision['action']:<6} labels={decision['labels']} model={version}")
    return str(decision["action"])


def main() -> None:
    client = TextguardClient(
        os.environ.get("TEXTGUARD_URL", "http://127.0.0.1:8000"), os.environ.get("TEXTGUARD_API_KEY")
    )
    try:
        for number, text in enumerate(["good morning everyone", "can you share the slides?", "merci à tous"]):
            decide(client, f"msg-{number}", text, meeting_id="weekly-sync")
    finally:
        client.close()


if __name__ == "__main__":
    main()
