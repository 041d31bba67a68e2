"""THE one place where the FHIR and CDS Hooks routes get their authorisation.

PLACEHOLDERS: these dependencies currently require nothing. The integrator wires each to the
gateway's scope dependency (issue 11, rnpc_shared.auth) in this file only; every FHIR route
already depends on exactly one of them. Scopes (SMART v2 style) each needs:

- fhir_bundle_write        POST /fhir/r4                         system/Bundle.write
- fhir_notification_write  POST /fhir/r4/notifications           system/Subscription.write
                           (plus the channel.header the EHR sends, checked by the same dependency)
- fhir_guidance_read       GET  /fhir/r4/GuidanceResponse[/{id}] user/GuidanceResponse.read
                                                                 (or system/GuidanceResponse.read)

CDS Hooks routes are NOT behind these: they authenticate the CDS client with its own signed JWT
(rnpc_gateway.cds.jwt_auth, per the CDS Hooks spec); discovery is open (no patient data).
"""

from __future__ import annotations

from fastapi import Depends


async def _placeholder() -> None:
    """Requires nothing yet (see module docstring)."""
    return None


fhir_bundle_write = Depends(_placeholder)  # system/Bundle.write
fhir_notification_write = Depends(_placeholder)  # system/Subscription.write
fhir_guidance_read = Depends(_placeholder)  # user/GuidanceResponse.read
