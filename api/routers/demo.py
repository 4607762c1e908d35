"""The demo's simulated fleet: list the scenarios and play one from the console.

Only ``parkguard demo`` runs a fleet; it puts a ScenarioPlayer in ``ctx.extras["scenarios"]``
(the API knows nothing of simulators). Elsewhere these routes answer 503, so a production park
cannot be fed simulated alarms through the API.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CtxDep

router = APIRouter(prefix="/api/v1/demo", tags=["demo"])
NAME = r"^[a-z0-9][a-z0-9-]{0,63}$"


class ScenarioPublic(BaseModel):
    name: str = Field(description="The scenario's name, e.g. `warehouse-fire`.")
    title_zh: str = Field(description="What the scenario plays, in Chinese.")
    title_en: str = Field(description="What the scenario plays, in English.")
    drill: bool = Field(description="Whether it is marked as a drill by default.")


class PlayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    drill: bool = Field(default=True, description="Mark the scenario's events as a drill.")
    speed: float = Field(
        default=1.0, gt=0, le=3600, description="Scenario time per real second (1 = real time)."
    )


class PlaybackPublic(BaseModel):
    scenario: str = Field(description="The scenario now playing.")
    steps: int = Field(description="How many timed steps it has.")
    speed: float = Field(description="Scenario time per real second.")
    drill: bool = Field(description="Whether its events are marked as a drill.")


class ScenarioPlayer(Protocol):
    def scenarios(self) -> list[dict[str, Any]]:
        """Each built-in scenario: name, title_zh, title_en, drill."""
        ...

    def play(self, name: str, speed: float, drill: bool) -> dict[str, Any]:
        """Start a scenario now; KeyError if unknown, ValueError if the fleet cannot play it.
        Returns scenario, steps, speed, drill."""
        ...


def _player(ctx: Any) -> ScenarioPlayer:
    player = ctx.extras.get("scenarios")
    if player is None:
        raise HTTPException(503, "no simulated fleet is running (only `parkguard demo` has one)")
    return player


@router.get("/scenarios", response_model=list[ScenarioPublic], summary="Scenarios to play")
def scenarios(ctx: CtxDep) -> list[ScenarioPublic]:
    """The built-in scenarios the demo's fleet can play."""
    return [ScenarioPublic.model_validate(s) for s in _player(ctx).scenarios()]


@router.post(
    "/scenarios/{name}/play",
    response_model=PlaybackPublic,
    status_code=202,
    summary="Play a scenario into the demo's fleet",
)
def play(
    ctx: CtxDep,
    name: Annotated[str, Path(pattern=NAME, description="A built-in scenario's name.")],
    body: PlayBody | None = None,
) -> PlaybackPublic:
    """Starts the scenario now; its alarms arrive through the broker like real ones."""
    player = _player(ctx)
    body = body or PlayBody()
    try:
        started = player.play(name, body.speed, body.drill)
    except KeyError as exc:
        known = ", ".join(s["name"] for s in player.scenarios())
        raise HTTPException(404, f"no scenario {name!r}; known: {known}") from exc
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    return PlaybackPublic.model_validate(started)
