"""KFP's six-field cron expressions (seconds first, as its scheduler, robfig/cron, reads them) and the
five-field schedule an Argo CronWorkflow takes for one."""

import re

DEFAULT_CRON = "0 0 2 * * *"

# (name, lowest, highest, names usable instead of numbers, whether '?' is allowed)
_FIELDS = (
    ("second", 0, 59, (), False),
    ("minute", 0, 59, (), False),
    ("hour", 0, 23, (), False),
    ("day-of-month", 1, 31, (), True),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), False),
    ("day-of-week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), True),
)
_ITEM = re.compile(r"^(?P<range>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?$")


def parse_cron(expression: str) -> list[str]:
    """The six fields of a KFP cron expression; ValueError saying what is wrong otherwise."""
    fields = expression.split()
    if len(fields) != 6:
        raise ValueError(f"'{expression}' has {len(fields)} field(s); KFP needs six: second minute hour "
                         f"day-of-month month day-of-week (e.g. '{DEFAULT_CRON}')")
    for text, (name, low, high, names, question) in zip(fields, _FIELDS, strict=True):
        if text == "?" and question:
            continue
        for item in text.split(","):
            match = _ITEM.match(item)
            if not match:
                raise ValueError(f"'{expression}': {name} field '{text}' is not valid cron syntax")
            if match["step"] is not None and int(match["step"]) == 0:
                raise ValueError(f"'{expression}': {name} field '{text}' has a step of 0")
            if match["range"] == "*":
                continue
            bounds = [_value(part, name, low, high, names, expression) for part in match["range"].split("-")]
            if len(bounds) == 2 and bounds[0] > bounds[1]:
                raise ValueError(f"'{expression}': {name} range '{match['range']}' runs backwards")
    return fields


def _value(text: str, name: str, low: int, high: int, names: tuple[str, ...], expression: str) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + low
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"'{expression}': {name} value '{text}' is outside {low}-{high}")
    return int(text)


def argo_schedule(expression: str) -> str:
    """The five-field (minute-resolution) schedule an Argo CronWorkflow takes for a six-field KFP cron."""
    fields = parse_cron(expression)
    if fields[0] != "0":
        raise ValueError(f"'{expression}': Argo CronWorkflows run at whole minutes; the seconds field must be 0")
    return " ".join("*" if field == "?" else field for field in fields[1:])
