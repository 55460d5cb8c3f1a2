import asyncio
import os
from agentexchange import AgentExchangeWS
ws = AgentExchangeWS(api_key=os.environ["AGENTEXCHANGE_API_KEY"])
price_cache: dict[str, str] = {}
@ws.on_ticker("all")
async def on_price(data):
    price_cache[data["symbol"]] = data["price"]
@ws.on_order_update()
async def on_order(data):
    if data["status"] == "filled":
        print(f"[FILL] {data['symbol']} {data['side']} {data['executed_quantity']} @ {data['executed_price']}")
async def strategy_loop():
    """Run a simple strategy while the WS feed updates the cache."""
    while True:
        btc = price_cache.get("BTCUSDT")
        if btc and float(btc) > 65000:
            print("BTC above $65k — consider taking profit")
        await asyncio.sleep(10)
async def main():
    # Run both the WS client and the strategy loop concurrently
    await asyncio.gather(
        ws.connect(),
        strategy_loop(),
    )
asyncio.run(main())
