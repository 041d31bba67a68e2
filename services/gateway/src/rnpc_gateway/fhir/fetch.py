"""Read resources from the hospital's FHIR server (id-only notifications, missing CDS prefetch).

Only URLs under the configured server are fetched (never an arbitrary URL from a payload).
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from rnpc_gateway.fhir.mapping import Issue, MappingError, Resource

MAX_PAGES = 10
FHIR_JSON = "application/fhir+json"
SUBSCRIPTION_REFERENCE = re.compile(r"(?:^|/)Subscription/(?!\.+$)[A-Za-z0-9\-.]{1,64}$")  # ends in a FHIR id


class FhirServerError(Exception):
    """The FHIR server could not be read (unreachable, or answered an error). What it was asked
    for may be there later (a restart, a replica catching up, a credential fixed): a caller
    keeps the work to retry it, never drops it."""


class FhirReader:
    def __init__(self, base_url: str, *, token: str | None = None, timeout_s: float = 10.0) -> None:
        self.base = base_url.rstrip("/")
        headers = {"Accept": FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._timeout_s = timeout_s

    def url_of(self, reference: str) -> str:
        """Absolute URL of a reference; refuses one pointing at another server (or climbing out of
        this one's base with dot segments)."""
        if any(segment in (".", "..") for segment in reference.split("?", 1)[0].split("/")):
            raise MappingError([Issue(reference, "(reference)", "foreign_server", "dot segments leave the configured FHIR server's base")])
        if reference.startswith(("http://", "https://")):
            if not reference.startswith(self.base + "/"):
                raise MappingError([Issue(reference, "(reference)", "foreign_server", f"not under the configured FHIR server {self.base}")])
            return reference
        return f"{self.base}/{reference.lstrip('/')}"

    async def _get(self, client: httpx.AsyncClient, url: str) -> dict[str, Any]:
        try:
            response = await client.get(url, headers=self._headers)
        except httpx.HTTPError as exc:
            raise FhirServerError(f"{url}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise FhirServerError(f"{url}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:  # e.g. a proxy's HTML maintenance page answered 200
            raise FhirServerError(f"{url}: not JSON ({response.headers.get('content-type', 'no content type')})") from exc
        if not isinstance(body, dict):
            raise FhirServerError(f"{url}: not a FHIR resource")
        return body

    async def read(self, reference: str) -> Resource:
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            return await self._get(client, self.url_of(reference))

    async def missed_events(self, subscription: str, first: int, last: int) -> Resource:
        """Subscriptions Backport IG `$events`: the notification Bundle of events first..last
        (inclusive) of `subscription`, full resources asked for (a hint the server may ignore)."""
        if not SUBSCRIPTION_REFERENCE.search(subscription):
            raise MappingError([Issue(subscription, "parameter[subscription]", "subscription_reference", "not a Subscription reference")])
        query = f"$events?eventsSinceNumber={first}&eventsUntilNumber={last}&content=full-resource"
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            return await self._get(client, f"{self.url_of(subscription)}/{query}")

    async def search(self, client: httpx.AsyncClient, query: str) -> list[Resource]:
        """All pages (up to MAX_PAGES) of a search, the matched resources."""
        url: str | None = self.url_of(query)
        found: list[Resource] = []
        for _ in range(MAX_PAGES):
            if url is None:
                break
            bundle = await self._get(client, url)
            found += [e["resource"] for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict)]
            url = next((link.get("url") for link in bundle.get("link") or [] if link.get("relation") == "next"), None)
            if url is not None:
                url = self.url_of(url)
        return found

    async def patient_record(self, focus: Resource) -> list[Resource]:
        """The focus resource plus what the mapper needs of its patient's compartment."""
        subject = str((focus.get("subject") or {}).get("reference") or "")
        if not subject.startswith("Patient/") and "/Patient/" not in subject:
            raise MappingError([Issue(f"{focus.get('resourceType')}/{focus.get('id')}", "subject", "patient_subject_required", "the focus has no Patient subject")])
        patient_id = subject.rsplit("/", 1)[-1]
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            patient = await self._get(client, self.url_of(f"Patient/{patient_id}"))
            resources = [patient]
            # ImagingStudy and DiagnosticReport: the restaging MRI / PET-CT (mapping.restaging)
            for kind in ("Condition", "Observation", "Procedure", "ImagingStudy", "DiagnosticReport"):
                resources += await self.search(client, f"{kind}?patient={patient_id}&_count=200")
        ids = {(r.get("resourceType"), r.get("id")) for r in resources}
        return resources if (focus.get("resourceType"), focus.get("id")) in ids else [focus, *resources]
