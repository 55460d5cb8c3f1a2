from agentexchange import AgentExchangeWS
ws = AgentExchangeWS(api_key="ak_live_...")
@ws.on_ticker("BTCUSDT")
async def handle_btc(data):
    print(f"BTC: ${data['price']}")
@ws.on_ticker("ETHUSDT")
async def handle_eth(data):
    print(f"ETH: ${data['price']}")
@ws.on_order_update()
async def handle_order(data):
    print(f"Order {data['order_id']} → {data['status']}")
@ws.on_portfolio()
async def handle_portfolio(data):
    print(f"Equity: ${data['total_equity']}")
# Block forever with auto-reconnect
await ws.connect()
