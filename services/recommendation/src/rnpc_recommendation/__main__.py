from rnpc_recommendation.app import create_app
from rnpc_recommendation.settings import RecommendationSettings
from rnpc_shared.service import serve

settings = RecommendationSettings()
serve(create_app(settings), settings)
