"""The statistics route: the same report the chat's stats command shows, as JSON.

A sequence is named by its id here, as everywhere in the API; an unknown one is a 404 that
names the ``sequence_id`` field, since it came from the query rather than the path.
"""

from __future__ import annotations

from aiohttp import web

from bot.api.common_schemas import FieldProblem
from bot.api.errors import ApiError
from bot.api.handling import answer, read_query, services_of
from bot.api.openapi import Answer, Operation
from bot.api.stats_schemas import StatsOut, StatsQuery, stats_out
from handlers.stats import collect_stats
from scheduler.errors import NotFound
from scheduler.sequence_replace import engine_ref, sequence_by_id


async def stats(request: web.Request) -> web.Response:
    services = services_of(request)
    query = read_query(request, StatsQuery)
    name = None
    if query.sequence_id is not None:
        async with services.db.engine.connect() as conn:
            try:
                record = await sequence_by_id(conn, services.db.workspace_id, query.sequence_id)
            except NotFound as err:
                raise ApiError(
                    404, str(err), details=[FieldProblem(field="sequence_id", message=str(err))]
                ) from None
        name = str(engine_ref(record.name, record.id))
    report = await collect_stats(
        services.db,
        services.clock.now(),
        sequence=name,
        days=query.days,
        timezone=services.settings.timezone,
    )
    return answer(stats_out(report))


# --- the table --------------------------------------------------------------------------


STATS_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/api/stats",
        stats,
        "getStats",
        "Statistics per sequence and step, with the daily trend",
        {200: Answer("The report.", StatsOut)},
        query=StatsQuery,
        errors={404: "No sequence with this sequence_id."},
        tag="stats",
    ),
)
