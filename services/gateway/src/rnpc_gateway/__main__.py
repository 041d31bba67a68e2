from rnpc_gateway.app import create_app
from rnpc_gateway.settings import GatewaySettings
from rnpc_shared.service import serve

settings = GatewaySettings()
serve(create_app(settings), settings)
