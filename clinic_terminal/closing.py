"""``with`` for the objects that hold something (a reader, a camera, a worker, a socket) until
their ``close()``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class Closing(ABC):
    """A mixin: ``with obj:`` gives ``obj`` itself and calls its ``close()`` on the way out,
    exception or not (``contextlib.closing``'s rule, for the object's own ``with``). A class
    that must do something on the way in (open the device, take a slot) overrides
    ``__enter__`` and returns ``self``."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
