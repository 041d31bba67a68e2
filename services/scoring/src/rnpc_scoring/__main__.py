from rnpc_scoring.app import create_app
from rnpc_scoring.settings import ScoringSettings
from rnpc_shared.service import serve

settings = ScoringSettings()
serve(create_app(settings), settings)
