"""Every document kind of the folder interface, put together: ``parse_request`` (which parser
reads a request file) and ``render_xml`` / ``to_json`` (which renderer writes a result).

The generic core knows no family that builds on it: ``parse`` reads a request file's envelope and
the base families, ``render`` writes the result header and the base results. The families that
build on them (``clinical``, ``homecare``, ``assistance``) are chosen here, above all four.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from clinic_terminal.xmlif.assistance import (
    assistance_json,
    assistance_request,
    build_assistance,
    is_assistance_number,
    parse_assistance_bulk,
)
from clinic_terminal.xmlif.clinical import build_clinical, clinical_json, parse_clinical
from clinic_terminal.xmlif.codec import encode_document
from clinic_terminal.xmlif.homecare import build_home_care, home_care_json, parse_home_care
from clinic_terminal.xmlif.model import (
    AnyRequest,
    AnyResult,
    AssistanceDownloadResult,
    AssistanceXmlResult,
    ClinicalResult,
    HomeCareResult,
    SingleRequest,
    XmlEncoding,
)
from clinic_terminal.xmlif.parse import parse_base, parse_single, read_request, request_header
from clinic_terminal.xmlif.render import base_json, build_base, header_json


def parse_request(name: str, data: bytes) -> AnyRequest:
    """Read one request file. Raises ``RequestError`` with a reason fit for the ``.err`` file."""
    kind, root, body = read_request(name, data)
    if kind in ("home_visit", "online_care"):
        return parse_home_care(kind, request_header(root, date_required=False), body)
    if kind in ("medications", "checkups", "procedures"):
        return parse_clinical(kind, request_header(root, date_required=False), body)
    if kind in ("assistance_bulk_registration", "assistance_bulk_download"):
        return parse_assistance_bulk(kind, request_header(root, date_required=False), root, body)
    if kind == "single":
        header, info = parse_single(root, body)
        if is_assistance_number(info.insurer_number):  # a 公費負担者番号: 医療扶助 (xmlif/assistance.py)
            return assistance_request(header, info)
        return SingleRequest(header, info)
    return parse_base(kind, root, body)


def build_tree(result: AnyResult, encoding: XmlEncoding) -> etree._Element:
    root = etree.Element("XmlMsg")
    if isinstance(result, AssistanceXmlResult | AssistanceDownloadResult):
        build_assistance(root, result, encoding)
    elif isinstance(result, ClinicalResult):
        build_clinical(root, result, encoding)
    elif isinstance(result, HomeCareResult):
        build_home_care(root, result, encoding)
    else:
        build_base(root, result, encoding)
    return root


def render_xml(result: AnyResult, encoding: XmlEncoding = "utf-8") -> bytes:
    """The result file's bytes: ``<?xml ... standalone="no"?>`` + the document in ``encoding``."""
    body = etree.tostring(build_tree(result, encoding), encoding="unicode", pretty_print=True)
    return encode_document(body, encoding)


def to_json(result: AnyResult) -> dict[str, Any]:
    """The JSON-able dict of a result (what ``GET /api/results/{file_id}`` serves)."""
    if isinstance(result, HomeCareResult):
        body = home_care_json(result)
    elif isinstance(result, AssistanceXmlResult | AssistanceDownloadResult):
        body = assistance_json(result)
    elif isinstance(result, ClinicalResult):
        body = clinical_json(result)
    else:
        body = base_json(result)
    return {"file_id": result.file_id, "kind": result.kind, "header": header_json(result.header), **body}


__all__ = ["build_tree", "parse_request", "render_xml", "to_json"]
