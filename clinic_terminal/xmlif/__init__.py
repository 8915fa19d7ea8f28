"""The terminal's XML folder interface (req/ res/ face/) for existing clinic software.

See docs/xml-interface.md. Entry points: ``FolderWatcher`` (watch ``req/``), ``write_face_result``
(the kiosk, after every card check), ``render_xml`` / ``to_json`` (the two renderings of one
result model), ``parse_request``, ``make_router`` (read-only JSON routes, in ``json_routes``).
"""

from clinic_terminal.xmlif.documents import parse_request, render_xml, to_json
from clinic_terminal.xmlif.face import write_face_result
from clinic_terminal.xmlif.model import ConsentChoices, SearchInfo, TerminalResult
from clinic_terminal.xmlif.parse import RequestError
from clinic_terminal.xmlif.service import EligibilityServer, XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from clinic_terminal.xmlif.watcher import FolderWatcher

__all__ = [
    "ConsentChoices",
    "EligibilityServer",
    "FolderWatcher",
    "RequestError",
    "SearchInfo",
    "TerminalResult",
    "TerminalState",
    "XmlTerminal",
    "parse_request",
    "render_xml",
    "to_json",
    "write_face_result",
]
