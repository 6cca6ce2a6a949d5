"""Build the environments Rehearse trains on, with clear errors for every way it can fail.

``make_env`` accepts a registered Gymnasium id (``"HalfCheetah-v5"``) or an entry
point (``"package.module:EnvClass"``), checks the spaces are ones Rehearse can plan
over, optionally runs Gymnasium's environment checker, and wraps the result:

    raw env [-> PixelObservation] [-> FrameStack] -> RescaleAction to [-1, 1] (only when needed)
        -> CostInfo -> FiniteCheck

Observations are a flat state vector (1-D ``Box``) or a channel-last image
``Box(0, 255, (Hp, Wp, C), uint8)``; ``pixels=True`` renders any ``rgb_array`` env
into such images, and ``frame_stack=k`` stacks the last ``k`` of them along ``C``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from gymnasium.utils.env_checker import check_env

from envs.errors import EnvironmentSpecError
from envs.ids import close_env_ids, did_you_mean, is_entry_point
from envs.wrappers import CostInfo, FiniteCheck, FrameStack, env_name, find_wrapper

__all__ = [
    "close_env_ids", "env_dims", "env_shapes", "is_entry_point", "is_image_space", "make_env", "parse_env_kwargs",
    "route_mujoco_warnings",
]

_ENTRY_POINT_HINT = (
    "To use an environment that is not registered, pass its entry point as "
    "'package.module:EnvClass' (a gymnasium.Env subclass importable from the "
    "current directory or an installed package)."
)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# PyYAML reads "1e-3" as a string (YAML 1.1 wants "1.0e-3"); we read it as a float.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


# ---------------------------------------------------------------- env kwargs


def parse_env_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` into a dict, typing each value with YAML.

    ``"n=3"`` gives ``3``, ``"dt=0.5"`` and ``"dt=1e-3"`` give floats, ``"on=true"``
    gives ``True``, ``"xs=[1,2]"`` gives ``[1, 2]``, and anything else stays a
    string. The value is everything after the first ``=``.

    Raises:
        EnvironmentSpecError: for an item without ``=``, an empty key, a key given
            twice, or a value that is not valid YAML.
    """
    parsed: dict[str, Any] = {}
    for item in items:
        key, value = _split_item(item)
        if key in parsed:
            raise EnvironmentSpecError(f"env kwarg {key!r} is given twice ({items!r}); give each key once.")
        parsed[key] = value
    return parsed


def _split_item(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise EnvironmentSpecError(
            f"malformed env kwarg {item!r}: expected the form key=value "
            "(e.g. ctrl_cost_weight=0.1 or max_episode_steps=200)."
        )
    return key, _parse_value(key, text.strip())


def _parse_value(key: str, text: str) -> Any:
    if _EXPONENT_FLOAT.fullmatch(text):
        return float(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EnvironmentSpecError(
            f"env kwarg {key}={text!r} is not a valid YAML value ({_plain(str(exc))}); "
            "quote strings and close brackets, e.g. key=[1, 2] or key='a b'."
        ) from exc


# ---------------------------------------------------------------- MuJoCo's warnings

_LOG = logging.getLogger(__name__)
_mujoco_warnings_seen: set[str] = set()


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings to this module's logger, each distinct message once per process.

    Left alone, MuJoCo prints every warning to stderr and appends it to ``MUJOCO_LOG.TXT`` in the
    working directory: Gymnasium's own models give a deprecation warning each time an environment
    is built (every evaluation environment of every run). A callback that someone else installed
    is kept. Called by :func:`make_env`; calling it again does nothing.
    """
    try:
        import mujoco
    except ImportError:  # environments without MuJoCo never warn through it
        return
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_log_mujoco_warning)


def _log_mujoco_warning(message: str) -> None:
    """MuJoCo's warning callback. It must never raise: an exception here aborts the whole process
    inside MuJoCo's C code (which is why this logs rather than calling ``warnings.warn``, which
    raises under ``-W error``)."""
    try:
        text = message.strip()
        if text not in _mujoco_warnings_seen:
            _mujoco_warnings_seen.add(text)
            _LOG.warning("MuJoCo: %s", text)
    except BaseException:  # even a KeyboardInterrupt raised here would abort the process
        pass


# ---------------------------------------------------------------- make_env


def make_env(
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    render_mode: str | None = None,
    check: bool | None = None,
    pixels: bool = False,
    frame_stack: int = 1,
) -> gym.Env[Any, Any]:
    """Make, check and wrap an environment for Rehearse.

    Args:
        env_id: a registered Gymnasium id (``"HalfCheetah-v5"``) or an entry point
            ``"package.module:EnvClass"`` naming a ``gymnasium.Env`` subclass.
        env_kwargs: keyword arguments for the environment's constructor.
        seed: when given, seeds the returned env's action space (seeding ``reset``
            is the caller's job).
        render_mode: passed to the environment only when not ``None``.
        check: run Gymnasium's environment checker. ``None`` means: run it for
            entry points and for registered ids whose code is not in Gymnasium.
        pixels: observe rendered ``(64, 64, 3)`` uint8 frames instead of the env's own
            observation (registered ids that render ``rgb_array`` only; see
            :func:`envs.pixels.make_pixel_env`, used with ``keep_state=False``).
        frame_stack: concatenate the last ``k`` frames along the channel axis
            (:class:`~envs.wrappers.FrameStack`); needs image observations when ``k > 1``.

    Returns:
        The env wrapped as raw [-> ``PixelObservation``] [-> ``FrameStack``] ->
        ``RescaleAction`` to ``[-1, 1]`` (only when the bounds differ) -> ``CostInfo``
        -> ``FiniteCheck``.

    Raises:
        EnvironmentSpecError: unknown id, broken entry point, bad kwargs, an
            unsupported space, or a failure of the environment checker.
    """
    if not (isinstance(frame_stack, int) and frame_stack >= 1):
        raise EnvironmentSpecError(f"frame_stack must be an int >= 1, got {frame_stack!r}.")
    route_mujoco_warnings()
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        env = _make_pixels(env_id, kwargs) if pixels else _make_raw(env_id, kwargs)
    except EnvironmentSpecError:
        raise
    except Exception as exc:  # the environment's own constructor failed (a bad kwarg value, ...)
        raise EnvironmentSpecError(
            f"making {env_id!r} with env kwargs {env_kwargs or {}} failed: {type(exc).__name__}: {exc}. "
            "Check the --env-kwargs values (or the environment's constructor)"
        ) from exc
    try:
        if frame_stack > 1:
            env = FrameStack(env, frame_stack)
        _require_supported_spaces(env, env_id)
        if _should_check(env, env_id, check):
            _run_env_checker(env, env_id)
    except EnvironmentSpecError:
        env.close()
        raise
    wrapped = wrap_env(env)
    if seed is not None:
        wrapped.action_space.seed(seed)
    return wrapped


def env_shapes(env: gym.Env[Any, Any]) -> tuple[tuple[int, ...], int]:
    """Return ``(obs_shape, A)``: ``(S,)`` for a state vector, ``(Hp, Wp, C)`` for images."""
    obs_space, action_space = env.observation_space, env.action_space
    if not ((_is_flat_box(obs_space) or is_image_space(obs_space)) and _is_flat_box(action_space)):
        raise EnvironmentSpecError(
            f"env_shapes needs a 1-D Box or uint8 image Box observation and a 1-D Box action, got "
            f"observation {obs_space} and action {action_space}; build the environment with envs.make_env."
        )
    assert obs_space.shape is not None and action_space.shape is not None
    return tuple(int(n) for n in obs_space.shape), int(action_space.shape[0])


def env_dims(env: gym.Env[Any, Any]) -> tuple[int, int]:
    """Return ``(S, A)``: the observation and action dimensions of a 1-D Box env."""
    obs_space, action_space = env.observation_space, env.action_space
    if not (_is_flat_box(obs_space) and _is_flat_box(action_space)):
        raise EnvironmentSpecError(
            f"env_dims needs 1-D Box spaces, got observation {obs_space} and action "
            f"{action_space}; build the environment with envs.make_env, which checks this."
        )
    assert obs_space.shape is not None and action_space.shape is not None
    return int(obs_space.shape[0]), int(action_space.shape[0])


# ---------------------------------------------------------------- construction


def _make_raw(env_id: str, kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    if is_entry_point(env_id):
        return _make_from_entry_point(env_id, kwargs)
    return _make_registered(env_id, kwargs)


def _make_pixels(env_id: str, kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    """The registered ``env_id`` rendering ``(64, 64, 3)`` uint8 frames as its observations."""
    if is_entry_point(env_id):
        raise EnvironmentSpecError(
            f"pixels=True works with registered ids only, not the entry point {env_id!r}; register the "
            "environment with gymnasium.register, or make it observe images itself."
        )
    from envs.pixels import make_pixel_env  # imported late: importing it sets MUJOCO_GL

    try:
        return make_pixel_env(env_id, keep_state=False, **kwargs)
    except gym.error.Error as exc:
        raise EnvironmentSpecError(f"could not make {env_id!r} with pixel observations: {_plain(str(exc))}.") from exc


def _make_registered(env_id: str, kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.UnregisteredEnv as exc:
        raise _unknown_id_error(env_id, exc) from exc
    except TypeError as exc:
        raise _bad_kwargs_error(env_id, kwargs, exc) from exc
    except (gym.error.Error, ImportError) as exc:
        raise EnvironmentSpecError(
            f"gymnasium could not make {env_id!r}: {_plain(str(exc))}. Install the missing "
            f"dependency it names, or choose another environment.{did_you_mean(env_id)}"
        ) from exc


def _unknown_id_error(env_id: str, cause: Exception) -> EnvironmentSpecError:
    return EnvironmentSpecError(
        f"unknown environment id {env_id!r} (gymnasium says: {_plain(str(cause))})."
        f"{did_you_mean(env_id)} {_ENTRY_POINT_HINT}"
    )


def _make_from_entry_point(entry_point: str, kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    env_class = _load_env_class(entry_point)
    try:
        return env_class(**kwargs)
    except TypeError as exc:
        raise _bad_kwargs_error(entry_point, kwargs, exc) from exc


def _load_env_class(entry_point: str) -> type[gym.Env[Any, Any]]:
    module_name, _, class_name = entry_point.rpartition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EnvironmentSpecError(
            f"cannot import module {module_name!r} of entry point {entry_point!r}: {exc}. "
            "Check the spelling, that the package is installed, and that you run from "
            "the directory that contains it (or put it on PYTHONPATH)."
        ) from exc
    env_class = getattr(module, class_name, None)
    if env_class is None:
        available = ", ".join(_env_classes_in(module)) or "none"
        raise EnvironmentSpecError(
            f"module {module_name!r} has no attribute {class_name!r} (entry point "
            f"{entry_point!r}); gymnasium.Env classes it defines: {available}."
        )
    if not (inspect.isclass(env_class) and issubclass(env_class, gym.Env)):
        raise EnvironmentSpecError(
            f"entry point {entry_point!r} is {env_class!r}, not a gymnasium.Env subclass; "
            "point it at the environment class itself (a subclass of gymnasium.Env)."
        )
    return env_class


def _env_classes_in(module: Any) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, gym.Env) and value is not gym.Env
    )


def _bad_kwargs_error(env_id: str, kwargs: Mapping[str, Any], exc: TypeError) -> EnvironmentSpecError:
    return EnvironmentSpecError(
        f"could not construct {env_id!r} with kwargs {dict(kwargs)!r}: {exc}. "
        "Check the env kwarg names and types against the environment's constructor."
    )


# ---------------------------------------------------------------- spaces


def _is_flat_box(space: gym.Space[Any]) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 1


def is_image_space(space: gym.Space[Any]) -> bool:
    """Whether ``space`` is a channel-last image ``Box(0, 255, (Hp, Wp, C), uint8)``."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


def _require_supported_spaces(env: gym.Env[Any, Any], env_id: str) -> None:
    action_problem = _action_space_problem(env.action_space)
    if action_problem:
        raise EnvironmentSpecError(
            f"environment {env_id} has action space {env.action_space}: {action_problem}. "
            "Rehearse plans over continuous actions and needs a 1-D gymnasium.spaces.Box "
            "with finite bounds. Use a continuous-control task (e.g. Pendulum-v1, "
            "HalfCheetah-v5), or wrap the environment so its actions are such a Box."
        )
    space = env.observation_space
    if not (_is_flat_box(space) or is_image_space(space)):
        hint = (
            " For {'pixels', 'state'} observations use the pixels alone (e.g. obs_mode=pixels for "
            "rehearse/BallCatch-v0, or pixels=True for envs that render)."
            if isinstance(space, gym.spaces.Dict) else ""
        )
        raise EnvironmentSpecError(
            f"environment {env_id} has observation space {space}; Rehearse's models support a flat "
            "state vector (a 1-D gymnasium.spaces.Box) or a channel-last image "
            "Box(0, 255, (Hp, Wp, C), uint8). Flatten the observation (e.g. "
            "gymnasium.wrappers.FlattenObservation inside an entry-point class), observe pixels, "
            f"or choose a state-based task.{hint}"
        )


def _action_space_problem(space: gym.Space[Any]) -> str:
    if not isinstance(space, gym.spaces.Box):
        return "it is not a Box"
    if len(space.shape) != 1:
        return f"it has shape {space.shape}, not a 1-D shape"
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        return "some bounds are infinite"
    if not np.all(space.high > space.low):
        return "some dimensions have high <= low"
    return ""


# ---------------------------------------------------------------- checker


_CHECKED_MODULES = ("gymnasium.", "envs.safety")
"""Environment code the checker has passed already: Gymnasium's, and the v5 tasks with costs (tests/test_safety.py
checks those), whose infinite observation bounds would warn on every environment made."""


def _should_check(env: gym.Env[Any, Any], env_id: str, check: bool | None) -> bool:
    if check is not None:
        return check
    if is_entry_point(env_id):
        return True
    spec = env.spec
    if spec is None:
        return True
    entry = spec.entry_point
    module = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    return not str(module).startswith(_CHECKED_MODULES)


def _run_env_checker(env: gym.Env[Any, Any], env_id: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            check_env(env.unwrapped, skip_render_check=True)
        except Exception as exc:  # the checker raises many types; all mean "broken env"
            raise EnvironmentSpecError(
                f"environment {env_id} failed gymnasium's env checker: "
                f"{type(exc).__name__}: {_plain(str(exc))}. Fix the environment (see "
                "https://gymnasium.farama.org/introduction/create_custom_env/), or pass "
                "check=False to skip the checker at your own risk."
            ) from exc
    for warning in caught:
        warnings.warn(f"{env_id}: {_plain(str(warning.message))}", UserWarning, stacklevel=3)


def _plain(message: str) -> str:
    """Strip terminal colours, line breaks and the final full stop from a message."""
    return " ".join(_ANSI_ESCAPE.sub("", message).split()).rstrip(".")


# ---------------------------------------------------------------- wrapping


def env_action_bounds(env: gym.Env[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` float32, each ``(A,)``: the action bounds of the environment beneath
    :func:`wrap_env`'s rescaling, i.e. what the wrapped env's actions -1 and 1 mean in the environment's
    own units (the env's own bounds where nothing rescales)."""
    rescale = find_wrapper(env, gym.wrappers.RescaleAction)
    space = rescale.env.action_space if rescale is not None else env.action_space
    assert isinstance(space, gym.spaces.Box)
    return space.low.astype(np.float32), space.high.astype(np.float32)


def wrap_env(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
    """Wrap an env the way Rehearse needs it (actions in [-1, 1], ``info["cost"]``, finite checks).

    Already-wrapped envs (outermost :class:`FiniteCheck`) are returned unchanged; unsupported
    spaces raise :class:`EnvironmentSpecError`.
    """
    if isinstance(env, FiniteCheck):
        return env
    _require_supported_spaces(env, env_name(env))
    space = env.action_space
    assert isinstance(space, gym.spaces.Box)  # checked by _require_supported_spaces
    if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
        env = gym.wrappers.RescaleAction(env, np.float32(-1.0), np.float32(1.0))
    return FiniteCheck(CostInfo(env))
