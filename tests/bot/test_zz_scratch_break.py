# scratch: prove the checks bite, by serving a document that omits the 404 of GET /api/sequences/{id}
import asyncio, json, pytest
from tests.bot import test_api_properties as t
from tests.bot.test_api import serve_api
import bot.api.routes as r

async def test_break(sqlite_db, clock, clean_env):
    doc = json.loads(r.build_document(r.OPERATIONS) and json.dumps(r.build_document(r.OPERATIONS)))
    del doc["paths"]["/api/sequences/{id}"]["get"]["responses"]["404"]
    async with serve_api(sqlite_db, clock) as api:
        api.server.app[r.API_STATE].document = json.dumps(doc).encode()
        with pytest.raises(Exception) as info:
            await asyncio.to_thread(t.explore, api.url("").rstrip("/"), api.auth("admin"))
        print(str(info.value)[:600])
