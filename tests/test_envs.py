"""Environment adapters and the registry: names, splits and episode lists; ALFWorld on the fixture
game; ScienceWorld's expert and splits; the WebShop client against a local stand-in service.

``StandInWebShop`` (also used by test_eval) speaks AgentGym's WebShop server protocol on a free
loopback port with three fake products and a purchase reward of 1.0 for the product and option the
goal asks for: a stand-in for the user's WebShop service, not a copy of WebShop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from openrlhf_act.envs.base import EnvError, EnvTask, normalized_score
from openrlhf_act.envs.online_label import OnlineEnvLabel
from openrlhf_act.envs.registry import env_options, episode_key, expert_options, list_tasks, make_env, resolve_episodes
from openrlhf_act.errors import DataError
from tests.conftest import requires_scienceworld

ALFWORLD_GAME = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "alfworld" / "game.tw-pddl"
requires_alfworld_game = pytest.mark.skipif(
    not ALFWORLD_GAME.is_file(), reason=f"the ALFWorld fixture game is absent ({ALFWORLD_GAME})"
)

PRODUCTS = {
    "b001": {"title": "red running shoes", "options": ["size 8", "size 9"]},
    "b002": {"title": "blue wool socks", "options": ["small", "large"]},
    "b003": {"title": "green rain jacket", "options": ["medium"]},
}
GOALS = [
    {"asin": "b001", "option": "size 9", "text": "i need red running shoes in size 9, price lower than 50.00 dollars"},
    {"asin": "b002", "option": "large", "text": "i want blue wool socks, large, price lower than 20.00 dollars"},
    {"asin": "b003", "option": "medium", "text": "find me a green rain jacket in medium"},
]


@dataclass
class Session:
    goal: int = 0
    page: str = "search"
    results: list[str] = field(default_factory=list)
    asin: str | None = None
    option: str | None = None


class StandInWebShop:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` is the base URL."""

    def __init__(self) -> None:
        self.sessions: dict[int, Session] = {}
        self.requests: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    # ---- page model -------------------------------------------------------------------------
    def _instruction(self, s: Session) -> str:
        return "Instruction: " + GOALS[s.goal % len(GOALS)]["text"]

    def _observation(self, s: Session) -> str:
        head = f"WebShop [SEP] {self._instruction(s)}"
        if s.page == "search":
            return head + " [SEP] Search"
        if s.page == "results":
            items = " [SEP] ".join(f"{a.upper()} [SEP] {PRODUCTS[a]['title']}" for a in s.results)
            return f"{head} [SEP] Back to Search [SEP] Page 1 (Total results: {len(s.results)}) [SEP] {items}"
        product = PRODUCTS[s.asin]
        options = " [SEP] ".join(product["options"])
        return f"{head} [SEP] Back to Search [SEP] < Prev [SEP] {options} [SEP] {product['title']} [SEP] Buy Now"

    def _available(self, s: Session) -> dict:
        if s.page == "search":
            return {"has_search_bar": True, "clickables": ["search"]}
        if s.page == "results":
            return {"has_search_bar": False, "clickables": ["back to search", *s.results]}
        return {
            "has_search_bar": False,
            "clickables": ["back to search", "< prev", *PRODUCTS[s.asin]["options"], "buy now"],
        }

    def _step(self, s: Session, action: str) -> tuple[float, bool]:
        name, _, rest = action.partition("[")
        arg = rest[:-1].strip().lower() if rest.endswith("]") else ""
        clickables = self._available(s)["clickables"]
        if name == "search" and s.page == "search" and arg:
            words = set(arg.split())
            s.results = [a for a, p in PRODUCTS.items() if words & set(p["title"].split())]
            s.page = "results"
        elif name == "click" and arg in clickables and arg != "search":
            if arg == "back to search":
                s.page, s.asin, s.option = "search", None, None
            elif arg == "< prev":
                s.page = "results"
            elif arg == "buy now":
                goal = GOALS[s.goal % len(GOALS)]
                return (1.0 if (s.asin, s.option) == (goal["asin"], goal["option"]) else 0.25), True
            elif s.page == "results":
                s.page, s.asin = "item", arg
            else:
                s.option = arg
        return 0.0, False

    # ---- HTTP -------------------------------------------------------------------------------
    def _app(self):
        from aiohttp import web

        def session(request) -> Session:
            return self.sessions[int(request.query["env_idx"])]

        async def health(request):
            return web.json_response("ok")

        async def create(request):
            env_id = len(self.sessions)
            self.sessions[env_id] = Session()
            return web.json_response(env_id)

        async def reset(request):
            body = await request.json()
            s = self.sessions[body["env_idx"]]
            s.__init__(goal=body.get("session_id") or 0)
            return web.json_response([self._observation(s), None])

        async def step(request):
            body = await request.json()
            s = self.sessions[body["env_idx"]]
            reward, done = self._step(s, body["action"])
            return web.json_response({"state": self._observation(s), "reward": reward, "done": done, "info": None})

        async def observation(request):
            return web.json_response(self._observation(session(request)))

        async def instruction(request):
            return web.json_response(self._instruction(session(request)))

        async def available(request):
            return web.json_response(self._available(session(request)))

        async def close(request):
            body = await request.json()
            return web.json_response({"closed": self.sessions.pop(body["env_idx"], None) is not None})

        @web.middleware
        async def record(request, handler):
            self.requests.append(f"{request.method} {request.path}")
            return await handler(request)

        app = web.Application(middlewares=[record])
        app.add_routes(
            [
                web.get("/", health),
                web.post("/create", create),
                web.post("/reset", reset),
                web.post("/step", step),
                web.get("/observation", observation),
                web.get("/instruction_text", instruction),
                web.get("/available_actions", available),
                web.post("/close", close),
            ]
        )
        return app

    def start(self) -> StandInWebShop:
        from aiohttp import web

        self._thread.start()

        async def serve():
            self._runner = web.AppRunner(self._app())
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            return site._server.sockets[0].getsockname()[1]

        port = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(timeout=30)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def webshop():
    service = StandInWebShop().start()
    yield service
    service.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- registry ---------------------------------------------------------------------------------
def test_registry_names_and_options():
    with pytest.raises(EnvError, match="unknown environment"):
        make_env("minecraft")
    with pytest.raises(EnvError, match="takes no option"):
        make_env("webshop", colour="red")
    assert {"url", "timeout", "max_steps"} <= set(env_options("webshop"))
    assert list_tasks("alfworld")[0] == "pick_and_place_simple" and len(list_tasks("alfworld")) == 6
    assert list_tasks("webshop") == ["webshop"]
    assert expert_options("scienceworld") == {"gold_path": True}
    with pytest.raises(EnvError, match="no expert"):
        expert_options("webshop")


def test_register_names_adapter_classes_imported_on_use():
    from openrlhf_act.envs.registry import ENVS, env_class, register

    with pytest.raises(EnvError, match="already registered"):
        register("webshop", "somewhere:Else")
    with pytest.raises(EnvError, match="not of the form"):
        register("toy", "toy_module")
    register("toy", "openrlhf_act.envs.webshop:WebShop")
    try:
        with pytest.raises(EnvError, match="not a TextEnv adapter named 'toy'"):
            env_class("toy")
    finally:
        del ENVS["toy"]
    assert env_class("alfworld").plays_game_files and env_class("scienceworld").eval_splits == ("test",)


def test_webshop_splits_are_the_standard_goal_ranges():
    test = resolve_episodes("webshop", split="test")
    assert [t.variation for t in test] == list(range(500))
    assert [t.variation for t in resolve_episodes("webshop", split="dev")] == list(range(500, 1500))
    assert len(resolve_episodes("webshop", split="test", episodes=7)) == 7
    assert [t.variation for t in resolve_episodes("webshop", split="train", variations=[1500, 9000])] == [1500, 9000]
    assert episode_key(test[3]) == "webshop:test:webshop/v3"
    with pytest.raises(EnvError, match="not in the 'test' split"):
        resolve_episodes("webshop", split="test", variations=[499, 500])
    with pytest.raises(EnvError, match="no fixed end"):
        resolve_episodes("webshop", split="train")
    with pytest.raises(EnvError, match="unknown WebShop split"):
        resolve_episodes("webshop", split="valid")
    with pytest.raises(EnvError, match="one task"):
        resolve_episodes("webshop", split="test", tasks=["shoes"])


# ---- online_env labels ------------------------------------------------------------------------
def online_label(**fields) -> str:
    return json.dumps({"kind": "online_env", **fields})


def test_labels_decode_to_tasks():
    decode = OnlineEnvLabel.decode
    sw = decode(online_label(env="scienceworld", task="find-animal", variation=225, split="test", max_steps=5))
    assert (sw.task.name, sw.task.variation, sw.task.split, sw.max_steps) == ("find-animal", 225, "test", 5)
    alf = decode(
        online_label(env="alfworld", game="json_2.1.1/train/pick_heat_then_place_in_recep-Potato-None-Sink-1/t/g")
    )
    assert alf.task.name == "pick_heat_then_place_in_recep" and alf.task.game_file.endswith("/g")
    for bad in (
        "not json",
        json.dumps({"kind": "next_action", "expert": "look"}),
        online_label(env="webshop", task="webshop"),
        online_label(env="scienceworld", task="find-animal", variation="3"),
        online_label(env="alfworld"),
        online_label(env="scienceworld", task="find-animal", max_steps=0),
    ):
        with pytest.raises(DataError):
            decode(bad)


def test_labels_round_trip_through_encode():
    """Data export writes the labels the executor reads: one definition for both."""
    game = "json_2.1.1/train/pick_heat_then_place_in_recep-Potato-None-Sink-1/t/game.tw-pddl"
    labels = [
        OnlineEnvLabel(EnvTask("scienceworld", "find-animal", variation=3, split="train")),
        OnlineEnvLabel(EnvTask("scienceworld", "boil", variation=0), max_steps=7),
        OnlineEnvLabel(EnvTask("alfworld", "pick_heat_then_place_in_recep", game_file=game)),
        OnlineEnvLabel(EnvTask("alfworld", "my-task", game_file="/games/x/game.tw-pddl")),
    ]
    for original in labels:
        assert OnlineEnvLabel.decode(original.encode()) == original
    assert json.loads(labels[2].encode()) == {"kind": "online_env", "env": "alfworld", "game": game}


# ---- ALFWorld ---------------------------------------------------------------------------------
def test_alfworld_first_observation_is_split_into_task_and_room():
    from openrlhf_act.envs.alfworld import split_observation

    text = "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in a room.\n\nYour task is to: put a mug in the sink."
    assert split_observation(text) == ("put a mug in the sink.", "You are in a room.")


def _fake_alfworld_data(root: Path) -> None:
    """ALFWorld's layout with copies of the fixture game: 2 solvable seen games, 1 unseen, and the
    kinds of folders ALFWorld itself skips (Sliced, movable, unsolvable, no game file)."""
    game = json.loads(ALFWORLD_GAME.read_text())
    layout = {
        "valid_seen/pick_heat_then_place_in_recep-Potato-None-SinkBasin-13/trial_A": (
            "pick_heat_then_place_in_recep",
            True,
        ),
        "valid_seen/pick_and_place_simple-Mug-None-Sink-2/trial_B": ("pick_and_place_simple", True),
        "valid_seen/pick_and_place_simple-AppleSliced-None-Sink-2/trial_C": ("pick_and_place_simple", True),
        "valid_seen/pick_and_place_simple-Cup-None-Sink-3/trial_D": ("pick_and_place_simple", False),
        "valid_seen/look_at_obj_in_light-Book-None-Lamp-1/trial_E": ("look_at_obj_in_light", None),
        "valid_unseen/pick_cool_then_place_in_recep-Apple-None-Fridge-1/trial_F": (
            "pick_cool_then_place_in_recep",
            True,
        ),
    }
    for folder, (task_type, solvable) in layout.items():
        path = root / "json_2.1.1" / folder
        path.mkdir(parents=True)
        (path / "traj_data.json").write_text(json.dumps({"task_type": task_type, "pddl_params": {}}))
        if solvable is not None:
            (path / "game.tw-pddl").write_text(json.dumps({**game, "solvable": solvable}))


@requires_alfworld_game
def test_alfworld_lists_games_as_alfworld_does(tmp_path, monkeypatch):
    from openrlhf_act.envs.alfworld import list_games

    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    _fake_alfworld_data(tmp_path)
    seen = list_games("valid_seen")
    assert [g.task_type for g in seen] == ["pick_and_place_simple", "pick_heat_then_place_in_recep"]
    assert len(list_games("unseen")) == 1
    tasks = resolve_episodes("alfworld", split="seen", tasks=["pick_heat_then_place_in_recep"])
    assert len(tasks) == 1 and tasks[0].split == "valid_seen"
    assert episode_key(tasks[0]).endswith("pick_heat_then_place_in_recep-Potato-None-SinkBasin-13/trial_A")
    with pytest.raises(EnvError, match="unknown ALFWorld task type"):
        resolve_episodes("alfworld", split="valid_seen", tasks=["cook_dinner"])
    with pytest.raises(EnvError, match="unknown ALFWorld split"):
        list_games("test")
    monkeypatch.delenv("ALFWORLD_DATA")
    with pytest.raises(EnvError, match="ALFWORLD_DATA"):
        list_games("valid_seen")


@requires_alfworld_game
def test_alfworld_planner_expert_wins_the_fixture_game():
    with make_env("alfworld", expert="planner") as env:
        env.load(EnvTask("alfworld", "pick_heat_then_place_in_recep", game_file=str(ALFWORLD_GAME)))
        step = env.reset()
        assert env.task_description == "put a hot potato in sinkbasin."
        assert "Welcome" not in step.observation and step.admissible and step.expert in step.admissible
        nothing = env.step("dance wildly")
        assert not nothing.valid and nothing.observation == "Nothing happens."
        step = env.reset()
        for _ in range(env.max_steps):
            step = env.step(step.expert)
            if step.done:
                break
        assert step.won and step.score == 1.0 and normalized_score(step.score, env.score_scale) == 1.0
    with make_env("alfworld", expert="handcoded") as env, pytest.raises(EnvError, match=r"traj_data\.json"):
        env.load(EnvTask("alfworld", "game", game_file=str(ALFWORLD_GAME)))
    with make_env("alfworld", expert=None) as env, pytest.raises(EnvError, match="does not exist"):
        env.load(EnvTask("alfworld", "game", game_file="no/such/game.tw-pddl"))


# ---- ScienceWorld -----------------------------------------------------------------------------
@pytest.mark.slow
@requires_scienceworld
def test_scienceworld_splits_expert_and_errors():
    from openrlhf_act.envs.scienceworld import FAST_TASKS

    with make_env("scienceworld", gold_path=True) as env:
        tasks = resolve_episodes("scienceworld", split="test", tasks=[FAST_TASKS[1]], episodes=2, env=env)
        assert [t.split for t in tasks] == ["test", "test"]
        train = set(env.variations(FAST_TASKS[1], "train"))
        assert not train & {t.variation for t in tasks}, "seen and unseen variations must not overlap"
        env.load(tasks[0])
        step = env.reset()
        assert env.child_pids and step.expert
        for _ in range(env.max_steps):
            step = env.step(step.expert)
            if step.done:
                break
        assert step.won and normalized_score(step.score, env.score_scale) == 1.0
        assert normalized_score(-100, env.score_scale) == 0.0
        with pytest.raises(EnvError, match="unknown ScienceWorld task"):
            resolve_episodes("scienceworld", split="test", tasks=["find-unicorn"], env=env)
        with pytest.raises(EnvError, match="not in the 'test' split"):
            resolve_episodes("scienceworld", split="test", tasks=[FAST_TASKS[1]], variations=[0], env=env)


def _words(observation: str) -> list[str]:
    """ScienceWorld lists a room's objects in a different order on every load: compare contents."""
    return sorted(observation.replace(",", " ").split())


@pytest.mark.slow
@requires_scienceworld
def test_scienceworld_reset_matches_the_official_reset():
    """``reset`` right after ``load`` skips the JVM's second full load, and a reset after steps
    rebuilds the world: both start the episode exactly as ``ScienceWorldEnv.reset`` does."""
    from openrlhf_act.envs.scienceworld import ScienceWorld

    tasks = resolve_episodes("scienceworld", split="test", tasks=["find-plant", "boil"], episodes=2)
    with ScienceWorld(gold_path=True, admissible=True) as ours, ScienceWorld(gold_path=True) as official:
        for task in tasks:
            official._env.load(task.name, task.variation, "", True)
            observation, info = official._env.reset()
            gold = official._env.get_gold_action_sequence()
            ours.load(task)
            first = ours.reset()
            assert _words(first.observation) == _words(observation), task
            assert (first.score, first.expert, first.reward) == (info["score"], gold[0], 0.0)
            # object names in the action list vary from load to load, like the listing order
            assert "look around" in first.admissible and "look around" in info["valid"]
            moved = ours.step(first.expert)
            assert moved.expert == gold[1]
            again = ours.reset()
            assert _words(again.observation) == _words(observation) and again.expert == gold[0]
            assert _words(ours.step(first.expert).observation) == _words(moved.observation)


# ---- WebShop ----------------------------------------------------------------------------------
def test_webshop_client_plays_an_episode(webshop):
    with make_env("webshop", url=webshop.url, timeout=10) as env:
        env.load(EnvTask("webshop", "webshop", variation=1, split="test"))
        step = env.reset()
        assert env.task_description.startswith("i want blue wool socks")
        assert step.admissible == ("search[<keywords>]",) and not step.done
        step = env.step("search[blue socks]")
        assert "click[b002]" in step.admissible and step.valid
        assert not env.step("click[b999]").valid
        env.step("click[b002]")
        env.step("click[large]")
        step = env.step("click[buy now]")
        assert step.done and step.won and step.score == 1.0 and step.reward == 1.0
        with pytest.raises(EnvError, match="not in the 'test' split"):
            env.load(EnvTask("webshop", "webshop", variation=700, split="test"))
    assert "POST /close" in webshop.requests


def test_webshop_unreachable_service_fails_fast():
    started = time.monotonic()
    with pytest.raises(EnvError, match="unreachable"):
        make_env("webshop", url=f"http://127.0.0.1:{free_port()}", timeout=3)
    assert time.monotonic() - started < 5


def test_webshop_silent_service_times_out():
    """A service that accepts connections but never answers must not hang the client."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        started = time.monotonic()
        with pytest.raises(EnvError, match="unreachable"):
            make_env("webshop", url=f"http://127.0.0.1:{server.getsockname()[1]}", timeout=1)
        assert time.monotonic() - started < 5
