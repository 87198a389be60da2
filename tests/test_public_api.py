"""The names users import from ``kittenfs``: adding one is a choice, removing one breaks users."""

import kittenfs

PUBLIC = {
    "AccessDenied",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "CorruptValue",
    "KeyNotFound",
    "KeyValueMapping",
    "KittenError",
    "ServerError",
    "Unavailable",
    "ValueInfo",
    "ValueTooLarge",
    "__version__",
}


def test_all_names_exactly_the_public_api() -> None:
    assert set(kittenfs.__all__) == PUBLIC
    assert len(kittenfs.__all__) == len(PUBLIC)  # no name listed twice


def test_every_public_name_is_importable() -> None:
    for name in kittenfs.__all__:
        assert getattr(kittenfs, name) is not None, name


def test_every_error_is_a_kitten_error() -> None:
    errors = PUBLIC - {"AsyncClient", "Client", "KeyValueMapping", "ValueInfo", "__version__"}
    for name in errors:
        assert issubclass(getattr(kittenfs, name), kittenfs.KittenError), name


def test_every_error_the_client_raises_is_exported() -> None:
    from kittenfs import errors

    raised = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, kittenfs.KittenError)
    }
    assert raised <= PUBLIC


def test_the_version_is_the_packages() -> None:
    from importlib.metadata import version

    assert kittenfs.__version__ == version("kittenfs")
