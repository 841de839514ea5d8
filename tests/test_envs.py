"""Tests for train.envs: the PPO environments. Offline: real ALE games from the ROMs
bundled in the ale-py wheel, CartPole, and a scripted fake emulator (FakeAtari) that
lets the Atari wrapper chain be checked frame by frame. Without gymnasium or ale-py
the import below fails (saying what to install); a missing ROM fails
test_bundled_roms_are_present."""

import gymnasium as gym
import numpy as np
import pytest

from train import envs

pytestmark = pytest.mark.usefixtures("no_network")


class FakeAtari(gym.Env):
    """An emulator stand-in with the parts of ale_py's AtariEnv the wrappers use.

    The screen of frame f (frames counted from the game's start) is grey level
    f % 256. `rewards` maps a frame to its reward; a life is lost at each frame
    in `life_losses`, and the game is over when no lives are left. Every action
    (one per emulator frame) is recorded in `actions`, and game restarts in
    `resets`.
    """

    _frameskip = 1  # what AtariPreprocessing checks: no frame skipping below it

    def __init__(self, meanings=("NOOP", "FIRE", "RIGHT", "LEFT"), rewards=None,
                 life_losses=(), lives=3):
        self.meanings = list(meanings)
        self.rewards = dict(rewards or {})
        self.life_losses = set(life_losses)
        self.start_lives = lives
        self.observation_space = gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(len(self.meanings))
        self.ale = self
        self.actions = []
        self.resets = 0
        self.frame = 0
        self.life_count = lives

    def get_action_meanings(self):
        return self.meanings

    def lives(self):
        return self.life_count

    def getScreenGrayscale(self, out):
        out[...] = self.frame % 256

    def getScreenRGB(self, out):
        out[...] = self.frame % 256

    def _screen(self):
        return np.full(self.observation_space.shape, self.frame % 256, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.resets += 1
        self.frame = 0
        self.life_count = self.start_lives
        return self._screen(), {}

    def step(self, action):
        self.actions.append(int(action))
        self.frame += 1
        if self.frame in self.life_losses:
            self.life_count -= 1
        reward = self.rewards.get(self.frame, 0.0)
        return self._screen(), reward, self.life_count == 0, False, {}


def fake_vector_env(**fake_kwargs):
    """One FakeAtari under wrap_atari, as a vector env with make_vector_env's autoreset mode."""
    vector = gym.vector.SyncVectorEnv(
        [lambda: envs.wrap_atari(FakeAtari(**fake_kwargs))],
        autoreset_mode=envs.AUTORESET_MODE,
    )
    return vector, vector.envs[0].unwrapped


def test_bundled_roms_are_present():
    import ale_py.roms

    for game in ("pong", "breakout"):
        assert ale_py.roms.get_rom_path(game) is not None, (
            f"ale-py has no {game} ROM; ale-py >= 0.9 bundles them (pip install ale-py)"
        )


def test_is_atari():
    assert envs.is_atari("PongNoFrameskip-v4")
    assert envs.is_atari("ALE/Pong-v5")
    assert envs.is_atari("BreakoutNoFrameskip-v4")
    assert not envs.is_atari("CartPole-v1")


@pytest.mark.parametrize("env_id", ["NoSuchGame-v9", "CartPole-v9", "Nowhere/Pong-v5"])
def test_unknown_id_is_a_one_line_value_error(env_id):
    for call in (lambda: envs.make_vector_env(env_id, 2, 0), lambda: envs.is_atari(env_id)):
        with pytest.raises(ValueError) as raised:
            call()
        message = str(raised.value)
        assert "\n" not in message
        assert repr(env_id) in message
        assert "CartPole-v1" in message and "PongNoFrameskip-v4" in message
        assert raised.value.__cause__ is None and raised.value.__suppress_context__


@pytest.mark.parametrize(
    "num_envs, seed, words",
    [(0, 0, "num_envs"), (2.0, 0, "num_envs"), (True, 0, "num_envs"), (2, "0", "seed")],
)
def test_bad_counts_and_seeds_are_refused(num_envs, seed, words):
    with pytest.raises(ValueError, match=f"^{words} must be"):
        envs.make_vector_env("CartPole-v1", num_envs, seed)


def test_pong_observations_are_stacked_grey_frames_channels_last():
    vector = envs.make_vector_env("PongNoFrameskip-v4", 8, seed=0)
    obs, _ = vector.reset()
    assert vector.single_observation_space == gym.spaces.Box(0.0, 1.0, (84, 84, 4), np.float32)
    assert vector.single_action_space == gym.spaces.Discrete(6)
    actions = np.full(8, 2)  # RIGHT: the paddle moves, so the frames change
    for _ in range(20):
        previous = obs
        obs, rewards, terminated, truncated, _ = vector.step(actions)
        assert obs.shape == (8, 84, 84, 4) and obs.dtype == np.float32
        assert 0.0 <= obs.min() and obs.max() <= 1.0
        # Each step shifts the stack by one frame: channel 3 is the newest.
        np.testing.assert_array_equal(obs[..., :3], previous[..., 1:])
    assert not (terminated | truncated).any()
    assert not np.array_equal(obs[..., 3], obs[..., 0])
    # Pixels / 255 of uint8 grey levels.
    np.testing.assert_allclose(obs * 255, np.round(obs * 255), atol=1e-4)
    vector.close()


def test_sub_env_i_is_seeded_with_seed_plus_i():
    actions = [2, 3, 0, 1] * 10

    def run(num_envs, seed):
        vector = envs.make_vector_env("PongNoFrameskip-v4", num_envs, seed)
        vector.reset()
        frames = [env.unwrapped.ale.getEpisodeFrameNumber() for env in vector.envs]
        for action in actions:
            obs, *_ = vector.step(np.full(num_envs, action))
        vector.close()
        return frames, obs

    frames, obs = run(3, seed=10)
    for i in range(3):
        alone_frames, alone_obs = run(1, seed=10 + i)
        assert frames[i] == alone_frames[0]
        np.testing.assert_array_equal(obs[i], alone_obs[0])
    # The seeds draw different no-op counts (1 to 30 frames), so the games differ.
    assert len(set(frames)) > 1


def test_frames_are_max_pooled_over_the_last_two_and_stacked_in_order():
    vector, fake = fake_vector_env(meanings=("NOOP", "RIGHT", "LEFT"))
    obs, _ = vector.reset(seed=0)
    start = fake.frame  # the no-op reset's frames
    assert 1 <= start <= envs.NOOP_MAX
    # The stack is padded with the reset frame.
    np.testing.assert_allclose(obs[0], start / 255, rtol=1e-6)
    obs, *_ = vector.step(np.array([1]))
    # 4 frames per step; the newest channel is the max of the last two (start+3, start+4).
    np.testing.assert_allclose(obs[0, ..., :3], start / 255, rtol=1e-6)
    np.testing.assert_allclose(obs[0, ..., 3], (start + 4) / 255, rtol=1e-6)
    assert fake.actions == [0] * start + [1] * 4


def test_fire_is_pressed_on_reset_only_in_games_with_fire():
    vector, fake = fake_vector_env(meanings=("NOOP", "FIRE", "RIGHT", "LEFT"))
    vector.reset(seed=1)
    noops = len(fake.actions) - 8
    assert 1 <= noops <= envs.NOOP_MAX
    assert fake.actions == [0] * noops + [1] * 4 + [2] * 4

    vector, fake = fake_vector_env(meanings=("NOOP", "RIGHT", "LEFT"))
    vector.reset(seed=1)
    assert set(fake.actions) == {0}


def test_life_loss_ends_the_training_episode_but_not_the_game():
    # 3 lives, lost at frames 200, 400, 600 (the third is game over); rewards
    # of 3, 5 and -2 on the way.
    vector, fake = fake_vector_env(
        rewards={100: 3.0, 300: 5.0, 500: -2.0}, life_losses=(200, 400, 600)
    )
    vector.reset(seed=2)
    rewards, ends, returns = [], [], []
    while len(ends) < 3:
        _, reward, terminated, truncated, infos = vector.step(np.array([3]))
        rewards.append(float(reward[0]))
        returns += envs.episode_returns(infos)
        if terminated[0] or truncated[0]:
            assert not truncated[0]
            ends.append((fake.life_count, fake.resets, list(returns)))
            if len(ends) < 3:
                # The autoreset after a lost life: one no-op step, then FIRE and
                # action 2, with the lives that are left.
                assert fake.actions[-12:] == [0] * 4 + [1] * 4 + [2] * 4
    assert ends == [
        (2, 1, []),  # life lost: the game goes on (no restart, no game return)
        (1, 1, []),
        (3, 2, [6.0]),  # game over: restarted, and its unclipped return reported
    ]
    # The agent saw every reward clipped to its sign: 3 -> 1, 5 -> 1, -2 -> -1.
    assert sorted(r for r in rewards if r) == [-1.0, 1.0, 1.0]


def test_breakout_life_loss_keeps_the_game_going():
    vector = envs.make_vector_env("BreakoutNoFrameskip-v4", 1, seed=0)
    vector.reset()
    ale = vector.envs[0].unwrapped.ale
    assert ale.lives() == 5
    for _ in range(2000):
        _, _, terminated, truncated, infos = vector.step(vector.action_space.sample())
        if terminated[0] or truncated[0]:
            break
    assert terminated[0], "no life lost in 2000 random steps"
    assert ale.lives() == 4  # a restarted game would have 5
    assert envs.episode_returns(infos) == []
    vector.close()


def test_cartpole_vector_env():
    vector = envs.make_vector_env("CartPole-v1", 4, seed=0)
    obs, _ = vector.reset()
    assert obs.shape == (4, 4) and obs.dtype == np.float32
    assert vector.single_action_space == gym.spaces.Discrete(2)
    obs, rewards, terminated, truncated, _ = vector.step(np.array([0, 1, 0, 1]))
    assert obs.shape == (4, 4) and obs.dtype == np.float32
    np.testing.assert_array_equal(rewards, [1.0] * 4)
    assert terminated.shape == truncated.shape == (4,)
    # Sub-envs are seeded differently.
    assert len({tuple(row) for row in obs}) == 4
    vector.close()


def cartpole_until_it_falls(vector):
    """Push every cart right until sub-env 0 falls; the end step's and the next step's results."""
    vector.reset()
    for steps in range(1, 500):
        end = vector.step(np.ones(vector.num_envs, int))
        if end[2][0]:
            return steps, end, vector.step(np.ones(vector.num_envs, int))
    raise AssertionError("CartPole did not fall in 500 steps")


def test_autoreset_contract_at_an_episode_boundary():
    vector = envs.make_vector_env("CartPole-v1", 1, seed=3)
    steps, end, after = cartpole_until_it_falls(vector)
    obs, reward, terminated, truncated, infos = end
    # The step that ends the episode: its own reward, terminated, and already
    # the next episode's first observation (CartPole starts within +-0.05).
    assert reward[0] == 1.0 and terminated[0] and not truncated[0]
    assert np.abs(obs[0]).max() <= 0.05
    # The episode's last observation is in infos: the pole is past 12 degrees.
    assert infos["_final_obs"][0]
    assert abs(infos["final_obs"][0][2]) > 12 * 2 * np.pi / 360
    assert envs.episode_returns(infos) == [float(steps)]
    # The next step is an ordinary step of the new episode: action taken,
    # reward counted, not done.
    next_obs, reward, terminated, truncated, infos = after
    assert reward[0] == 1.0 and not terminated[0] and not truncated[0]
    assert next_obs[0][1] > obs[0][1]  # pushed right: the cart's velocity grew
    assert envs.episode_returns(infos) == []
    vector.close()


def test_async_vector_env_matches_sync(monkeypatch):
    # The forkserver start method talks to its server over a Unix socket,
    # which the no_network fixture would refuse.
    monkeypatch.undo()
    results = []
    for async_ in (False, True):
        vector = envs.make_vector_env("CartPole-v1", 2, seed=4, async_=async_)
        assert isinstance(vector, gym.vector.AsyncVectorEnv) == async_
        steps, end, after = cartpole_until_it_falls(vector)
        results.append((steps, end[0], end[1], envs.episode_returns(end[4]), after[0]))
        vector.close()
    (steps, *arrays), (async_steps, *async_arrays) = results
    assert steps == async_steps
    for array, async_array in zip(arrays, async_arrays):
        np.testing.assert_array_equal(array, async_array)
    assert results[1][3] == [float(steps)]
