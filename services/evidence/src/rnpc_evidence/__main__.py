from rnpc_evidence.app import create_app
from rnpc_evidence.settings import EvidenceSettings
from rnpc_shared.service import serve

settings = EvidenceSettings()
serve(create_app(settings), settings)
