"""The sandbox org's describe results: ``GET /sobjects``, ``/sobjects/{Type}`` and
``/sobjects/{Type}/describe``, as a real org answers them.

Account and Contact are described by the describe results shipped in ``describes/`` (a real
org's, with the org-specific parts made the sandbox's), their field list being the object's fields
as the sandbox holds them: Salesforce's standard fields exactly as the describe gives them, then the
hub's custom fields. The custom objects ``Invoice__c`` and ``Payment__c`` are described in the same
shape, from their fields. URLs name the API version asked for and the org's instance URL.
"""

import json
from typing import Any

from crossledger.plugins.salesforce.sandbox.schema import OBJECTS, SObjectType, describe_file

Values = dict[str, Any]

RECORDED_VERSION = "vXX.X"
RECORDED_INSTANCE = "https://orgname.my.salesforce.com"
"""How the shipped describes name the API version and the org's host in their URLs."""

BASIC_KEYS = ("activateable", "createable", "custom", "customSetting", "deepCloneable", "deletable",
              "deprecatedAndHidden", "feedEnabled", "hasSubtypes", "isInterface", "isSubtype", "keyPrefix", "label",
              "labelPlural", "layoutable", "mergeable", "mruEnabled", "name", "queryable", "replicateable",
              "retrieveable", "searchable", "triggerable", "undeletable", "updateable", "urls")
"""The object-level attributes the global describe and ``GET /sobjects/{Type}`` list for an object."""


def describe(sobject: SObjectType, version: str, instance_url: str) -> Values:
    """``GET /sobjects/{Type}/describe``: the object, its fields, record types and child relationships."""
    body = _custom_object(sobject) if sobject.custom else {**describe_file(sobject.name)}
    body["fields"] = [field.describe() for field in sobject.fields]
    localized: Values = json.loads(json.dumps(body).replace(f"/services/data/{RECORDED_VERSION}/",
                                                            f"/services/data/{version}/")
                                   .replace(RECORDED_INSTANCE, instance_url))
    return localized


def basic(sobject: SObjectType, version: str, instance_url: str) -> Values:
    """The object's attributes as ``GET /sobjects`` and ``GET /sobjects/{Type}`` list them."""
    full = describe(sobject, version, instance_url)
    shown = {key: full[key] for key in BASIC_KEYS}
    shown["urls"] = {key: url for key, url in full["urls"].items() if key in ("sobject", "describe", "rowTemplate")}
    return shown


def global_describe(version: str, instance_url: str) -> Values:
    """``GET /sobjects``: every object of the org."""
    return {"encoding": "UTF-8", "maxBatchSize": 200,
            "sobjects": [basic(sobject, version, instance_url) for sobject in OBJECTS.values()]}


def _custom_object(sobject: SObjectType) -> Values:
    """A custom object's describe: Account's object-level shape, with what makes a custom object."""
    template = describe_file("Account")
    root = f"/services/data/{RECORDED_VERSION}/sobjects/{sobject.name}"
    return {
        **template,
        "name": sobject.name, "label": sobject.label, "labelPlural": sobject.plural, "keyPrefix": sobject.key_prefix,
        "custom": True, "mergeable": False, "feedEnabled": False, "childRelationships": [], "namedLayoutInfos": [],
        "supportedScopes": [{"label": "All " + sobject.plural.lower(), "name": "everything"},
                            {"label": "My " + sobject.plural.lower(), "name": "mine"}],
        "recordTypeInfos": [info for info in template["recordTypeInfos"] if info["master"]],
        "urls": {"compactLayouts": f"{root}/describe/compactLayouts", "rowTemplate": f"{root}/{{ID}}",
                 "approvalLayouts": f"{root}/describe/approvalLayouts",
                 "uiDetailTemplate": f"{RECORDED_INSTANCE}/{{ID}}", "uiEditTemplate": f"{RECORDED_INSTANCE}/{{ID}}/e",
                 "listviews": f"{root}/listviews", "describe": f"{root}/describe",
                 "uiNewRecord": f"{RECORDED_INSTANCE}/{sobject.key_prefix}/e", "quickActions": f"{root}/quickActions",
                 "layouts": f"{root}/describe/layouts", "sobject": root},
    }
