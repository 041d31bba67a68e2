"""THE one place where the FHIR routes get their authorisation: the gateway's scopes
(rnpc_shared.auth), one per capability whatever the format — a FHIR Bundle or a Subscription
notification writes a record like POST /v1/recurrences; a GuidanceResponse is a recommendation.

- fhir_bundle_write        POST /fhir/r4                         user/RecurrenceRecord.write
- fhir_notification_write  POST /fhir/r4/notifications           user/RecurrenceRecord.write
- fhir_guidance_read       GET  /fhir/r4/GuidanceResponse[/{id}] user/Recommendation.read

CDS Hooks routes are NOT behind these: they authenticate the CDS client with its own signed JWT
(rnpc_gateway.cds.jwt_auth, per the CDS Hooks spec); discovery is open (no patient data).
"""

from __future__ import annotations

from fastapi import Depends

from rnpc_shared.auth import SCOPE_RECOMMENDATION_READ, SCOPE_RECORD_WRITE, require_scope

fhir_bundle_write = Depends(require_scope(SCOPE_RECORD_WRITE))
fhir_notification_write = Depends(require_scope(SCOPE_RECORD_WRITE))
fhir_guidance_read = Depends(require_scope(SCOPE_RECOMMENDATION_READ))
