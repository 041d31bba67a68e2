"""THE one place where the FHIR routes get their authorisation: the gateway's scopes
(rnpc_shared.auth), one per capability whatever the format — a FHIR Bundle or a Subscription
notification writes a record like POST /v1/recurrences; a GuidanceResponse is a recommendation.

- FhirBundleWrite        POST /fhir/r4                         user/RecurrenceRecord.write
- FhirNotificationWrite  POST /fhir/r4/notifications           user/RecurrenceRecord.write
- FhirGuidanceRead       GET  /fhir/r4/GuidanceResponse[/{id}] user/Recommendation.read

CDS Hooks routes are NOT behind these: they authenticate the CDS client with its own signed JWT
(rnpc_gateway.cds.jwt_auth, per the CDS Hooks spec); discovery is open (no patient data).
"""

from __future__ import annotations

from typing import Annotated

from rnpc_gateway.audit import Auditor, audited
from rnpc_shared.auth import SCOPE_RECOMMENDATION_READ, SCOPE_RECORD_WRITE

# Each is the route's auditor too (`audited`): `auditor: FhirBundleWrite`.
FhirBundleWrite = Annotated[Auditor, audited(SCOPE_RECORD_WRITE)]
FhirNotificationWrite = Annotated[Auditor, audited(SCOPE_RECORD_WRITE)]
FhirGuidanceRead = Annotated[Auditor, audited(SCOPE_RECOMMENDATION_READ)]
