"""Vectorised Gymnasium environments for PPO: Atari with the DeepMind wrapping, classic control as is.

`make_vector_env(env_id, num_envs, seed)` is what the PPO loop calls;
`episode_returns(infos)` reads the finished games' returns out of a vector
step's infos; `wrap_atari(env)` is the Atari wrapper chain on its own (tests
drive it with a fake emulator).

The Atari wrapping is the one of the PPO paper's baselines (cleanrl's
ppo_atari, Stable-Baselines3's AtariWrapper): no-op reset of 1-30 frames,
action repeat 4 with a max over the last two frames, a life loss ends the
*training* episode (the game itself only restarts on game over), FIRE pressed
on reset in games that need it, rewards clipped to their sign, 84x84 grey
frames, the last 4 stacked channels-last, pixels / 255 as float32. Episode
statistics are recorded below the life-loss and clipping wrappers, so they are
the real, unclipped, whole-game scores (what the paper's Fig. 9 plots).
"""

import numpy as np

try:
    import ale_py
    import gymnasium as gym
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        f"train.envs needs gymnasium and ale-py ({error}); "
        "install them with: pip install -e '.[train]'"
    ) from error

# Importing ale_py registers the Atari ids; register_envs is the documented way
# to say so (and keeps the import from looking unused).
gym.register_envs(ale_py)

KNOWN_IDS = ("CartPole-v1", "PongNoFrameskip-v4", "BreakoutNoFrameskip-v4", "ALE/Pong-v5")

# The vector envs reset a finished sub-environment inside the step that ends
# it (see make_vector_env). Gymnasium's default, NEXT_STEP, would instead spend
# the following step on the reset, ignoring that step's action.
AUTORESET_MODE = gym.vector.AutoresetMode.SAME_STEP

NOOP_MAX = 30
FRAME_SKIP = 4
SCREEN_SIZE = 84
FRAME_STACK = 4


def _spec(env_id):
    """The registered spec of `env_id`, or a one-line ValueError naming it."""
    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a string, got {env_id!r}")
    try:
        return gym.spec(env_id)
    except gym.error.Error as error:
        raise ValueError(
            f"unknown environment id {env_id!r}: {str(error).rstrip('.')}; "
            f"known ids include {', '.join(KNOWN_IDS)}"
        ) from None


def is_atari(env_id):
    """Whether `env_id` is an ALE Atari game (any id whose entry point is ale_py's AtariEnv).

    That covers "PongNoFrameskip-v4", "Pong-v4", "ALE/Pong-v5" and so on.
    An unregistered id is a one-line ValueError.
    """
    entry_point = _spec(env_id).entry_point
    return isinstance(entry_point, str) and entry_point.startswith("ale_py")


class EpisodicLife(gym.Wrapper):
    """A life loss ends the training episode; the game restarts only on game over.

    `step` reports terminated=True when the emulator's life counter drops (and
    lives remain). The following `reset` then does not restart the game: it
    takes one no-op step and play continues with the lives left. Only after
    a real game over (or truncation), or when a seed or options are passed, does
    `reset` restart the game.

    Written here because gymnasium's `AtariPreprocessing(terminal_on_life_loss=True)`
    also terminates on a life loss, but its next reset restarts the whole game,
    so an agent would never see past its first life. This is the DeepMind /
    Stable-Baselines3 EpisodicLifeEnv semantics.
    """

    def __init__(self, env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed=None, options=None):
        if self.game_over or seed is not None or options is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Every reset presses FIRE, then action 2, so games that wait for FIRE start.

    Only for games whose action 1 is FIRE (`needs_fire`). Written here because
    gymnasium has no such wrapper; this is the DeepMind / Stable-Baselines3
    FireResetEnv. Placed outside EpisodicLife, so FIRE is also pressed after
    each lost life (Breakout serves a new ball only on FIRE).
    """

    def __init__(self, env):
        if not needs_fire(env):
            raise ValueError(
                f"FireReset: action 1 of this game is not FIRE "
                f"({env.unwrapped.get_action_meanings()})"
            )
        super().__init__(env)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            obs, _, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


def needs_fire(env):
    """Whether the game's action 1 is FIRE (and it has at least 3 actions), as DeepMind's check."""
    meanings = env.unwrapped.get_action_meanings()
    return len(meanings) >= 3 and meanings[1] == "FIRE"


def wrap_atari(env):
    """The DeepMind wrapping of an ALE env made with frameskip=1; observations (84, 84, 4) float32 in [0, 1].

    Innermost to outermost:
    - `AtariPreprocessing` (gymnasium): no-op reset of 1-30 frames, action
      repeat 4 with a max over the last two frames, 84x84 grey (cv2 INTER_AREA),
      / 255 as float32; terminal_on_life_loss off (EpisodicLife does that).
    - `RecordEpisodeStatistics`: here, below EpisodicLife and the clipping, its
      info["episode"] is the whole game's unclipped return ("r") and length in
      agent steps ("l"), emitted on the step where the game ends.
    - `EpisodicLife`, then `FireReset` if the game's action 1 is FIRE.
    - `TransformReward(np.sign)`: the reward seen by the agent is -1, 0 or 1.
      (`ClipReward(-1, 1)` would leave a fractional reward unchanged; the
      DeepMind rule is the sign.)
    - `FrameStackObservation(4)`, padded with the reset frame, then moved to
      channels-last because Keras' Conv2D is channels-last: channel 3 is the
      newest frame.
    """
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=NOOP_MAX,
        frame_skip=FRAME_SKIP,
        screen_size=SCREEN_SIZE,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=True,
    )
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = EpisodicLife(env)
    if needs_fire(env):
        env = FireReset(env)
    env = gym.wrappers.TransformReward(env, np.sign)
    env = gym.wrappers.FrameStackObservation(env, FRAME_STACK)
    stacked = env.observation_space
    channels_last = gym.spaces.Box(
        low=np.moveaxis(stacked.low, 0, -1),
        high=np.moveaxis(stacked.high, 0, -1),
        dtype=np.float32,
    )
    return gym.wrappers.TransformObservation(
        env, lambda obs: np.moveaxis(obs, 0, -1), channels_last
    )


def _make_one(env_id, atari, seed):
    """A thunk (what gymnasium's vector envs take) making one wrapped, seeded env."""

    def make():
        if atari:
            # The wrapper does the frame skipping; the id's own is turned off.
            env = wrap_atari(gym.make(env_id, frameskip=1))
        else:
            env = gym.wrappers.RecordEpisodeStatistics(gym.make(env_id))
            space = env.observation_space
            if not isinstance(space, gym.spaces.Box):
                raise ValueError(
                    f"{env_id}: observations must be a Box of numbers, got {space}"
                )
            if space.dtype != np.float32:
                env = gym.wrappers.DtypeObservation(env, np.float32)
        env.reset(seed=seed)
        env.action_space.seed(seed)
        return env

    return make


def make_vector_env(env_id, num_envs, seed, *, async_=False):
    """`num_envs` copies of `env_id` as one gymnasium vector env, seeded and wrapped for PPO.

    Atari ids (`is_atari`: "PongNoFrameskip-v4", "ALE/Pong-v5", ...) get
    `wrap_atari`: observations (num_envs, 84, 84, 4) float32 in [0, 1],
    rewards clipped to -1/0/1, a lost life ends the episode. The id's own
    frame skipping is turned off (the wrapper repeats each action 4 frames);
    other registered settings are kept, so the v5 ids keep their sticky actions
    (repeat_action_probability 0.25) and NoFrameskip-v4 ids have none. Any other
    id (CartPole-v1, ...) gets only `RecordEpisodeStatistics`, observations cast
    to float32. An unregistered id is a one-line ValueError.

    Sub-env i is seeded with seed + i (emulator, no-op counts, action space)
    when it is made, so the first `envs.reset()` is reproducible without a
    seed; `envs.reset(seed=s)` reseeds sub-env i with s + i. `async_=True`
    runs each sub-env in its own process (AsyncVectorEnv, "forkserver" start,
    so a parent that has imported TensorFlow is not forked; as with any
    non-fork start, a script calling it needs an `if __name__ == "__main__":`
    guard); the default steps them in this process, which was the faster on
    2 CPU cores. Call `envs.close()` when done.

    Autoreset contract (AutoresetMode.SAME_STEP, for every id): on the step
    where sub-env i's episode ends, terminated[i] or truncated[i] is True,
    reward[i] is that last transition's reward, and obs[i] is already the
    first observation of the next episode; the episode's last observation is
    infos["final_obs"][i] (where infos["_final_obs"][i] is True) and its step
    info is in infos["final_info"]. The next step is an ordinary step of the
    new episode from obs[i] (its action is used, reward counted). So for GAE:
    done[t] = terminated[t] | truncated[t] masks the bootstrap from obs[t+1]
    (the classic gym autoreset that cleanrl's PPO loop assumes); to bootstrap
    a truncated episode, evaluate the value of final_obs instead.
    For Atari, "episode" here means a life; finished *games* are what
    `episode_returns` reports.
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    atari = is_atari(env_id)
    thunks = [_make_one(env_id, atari, seed + i) for i in range(num_envs)]
    if async_:
        envs = gym.vector.AsyncVectorEnv(
            thunks, context="forkserver", autoreset_mode=AUTORESET_MODE
        )
    else:
        envs = gym.vector.SyncVectorEnv(thunks, autoreset_mode=AUTORESET_MODE)
    envs.action_space.seed(seed)
    return envs


def episode_returns(infos):
    """The returns of the games that ended in one vector step, from its `infos`, in sub-env order.

    Each sub-env's RecordEpisodeStatistics puts {"r", "l", "t"} under "episode"
    in the info of the step that ends a game (for Atari: real game over or
    truncation, not a lost life; "r" is the unclipped score). The vector env
    stacks those per sub-env with a boolean mask "_episode". Under
    make_vector_env's SAME_STEP autoreset that step info sits in
    infos["final_info"]; in NEXT_STEP mode it is infos itself. Both places
    are read.
    """
    returns = []
    for where in (infos.get("final_info", {}), infos):
        episode = where.get("episode")
        if episode is not None:
            returns.extend(float(r) for r in np.asarray(episode["r"])[where["_episode"]])
    return returns
