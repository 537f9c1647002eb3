"""nginx's time values, read exactly as ``ngx_parse_time`` reads them (nginx 1.25-1.27).

:func:`parse_time` is what :mod:`grader.learner.nginxconf` judges ``proxy_read_timeout`` with;
:func:`time_seconds` is the same in seconds, for the checks that compare a config to a budget.
"""

from __future__ import annotations

# NGX_MAX_INT_T_VALUE on the 64-bit builds nginx images ship: the overflow bound of parse_time.
_NGX_MAX_INT = 2**63 - 1

# ngx_parse_time's steps: units must come largest first, each at most once.
(
    _ST_START,
    _ST_YEAR,
    _ST_MONTH,
    _ST_WEEK,
    _ST_DAY,
    _ST_HOUR,
    _ST_MIN,
    _ST_SEC,
    _ST_MSEC,
    _ST_LAST,
) = range(10)
_UNIT_STEP = {
    "y": (_ST_YEAR, 365 * 86400),
    "M": (_ST_MONTH, 30 * 86400),
    "w": (_ST_WEEK, 7 * 86400),
    "d": (_ST_DAY, 86400),
    "h": (_ST_HOUR, 3600),
    "m": (_ST_MIN, 60),
    "s": (_ST_SEC, 1),
    " ": (_ST_LAST, 1),  # a space ends a bare number of seconds, as in "1 2" (= 3 s)
}


def parse_time(text: str, *, is_sec: bool = False) -> int | None:
    """The value in ms (``is_sec`` False) or s, as nginx's ``ngx_parse_time``; None if rejected.

    ``proxy_read_timeout`` is an msec directive (``ngx_conf_set_msec_slot``), read with ``is_sec``
    False: a bare number is seconds; units ms, s, m, h, d, w, largest first and each once, as in
    ``1m30s``; a bare number at the end adds seconds. ``y`` (365 days) and ``M`` (30 days) exist
    only for second directives (``is_sec`` True), which in turn reject ``ms``: nginx refuses
    ``proxy_read_timeout 1y``. Fractions, signs and other letters are rejected, as is a value
    above nginx's integer range.
    """
    valid = False
    value = total = 0
    cutoff, cutlim = divmod(_NGX_MAX_INT, 10)
    step = _ST_START if is_sec else _ST_MONTH  # msec values start below months: no y, no M
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        i += 1
        if "0" <= char <= "9":
            digit = ord(char) - ord("0")
            if value > cutoff or (value == cutoff and digit > cutlim):
                return None
            value = value * 10 + digit
            valid = True
            continue
        if char == "m" and i < end and text[i] == "s":
            if is_sec or step >= _ST_MSEC:
                return None
            i += 1
            step, scale, bound = _ST_MSEC, 1, _NGX_MAX_INT
        elif char in _UNIT_STEP:
            unit_step, scale = _UNIT_STEP[char]
            # Each unit must be smaller than the one before. "y" is tested with ">" in nginx, a
            # no-op difference as no unit is larger; msec values start at months, so y fails.
            if step >= unit_step:
                return None
            step, bound = unit_step, _NGX_MAX_INT // scale
        else:
            return None
        if step != _ST_MSEC and not is_sec:
            scale *= 1000
            bound //= 1000
        if value > bound:
            return None
        value *= scale
        if total > _NGX_MAX_INT - value:
            return None
        total += value
        value = 0
        while i < end and text[i] == " ":
            i += 1
    if not valid:
        return None
    if not is_sec:
        if value > _NGX_MAX_INT // 1000:
            return None
        value *= 1000
    if total > _NGX_MAX_INT - value:
        return None
    return total + value


def time_seconds(text: str) -> float | None:
    """Seconds in the value of an msec directive such as proxy_read_timeout, None if rejected."""
    ms = parse_time(text)
    return None if ms is None else ms / 1000
