"""Tests for the safe contrast-expression parser and BIDS-safe contrast labels."""

from __future__ import annotations

import ast
import inspect
import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bids_glm.design import contrasts
from bids_glm.design.contrast_options import ContrastSpec, parse_contrast_option
from bids_glm.design.contrasts import (
    ContrastError,
    bids_label,
    missing_columns,
    parse_expression,
    unique_labels,
    weights_text,
    weights_vector,
)

PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
LABEL = re.compile(r"^[A-Za-z0-9]+$")


# --------------------------------------------------------------------------- valid expressions


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("face", {"face": 1.0}),
        ("face - house", {"face": 1.0, "house": -1.0}),
        ("2*face", {"face": 2.0}),
        ("face*2", {"face": 2.0}),
        ("(face + house)/2", {"face": 0.5, "house": 0.5}),
        ("-(a - b)", {"a": -1.0, "b": 1.0}),
        ("0.5*(a+b) - c", {"a": 0.5, "b": 0.5, "c": -1.0}),
        ("a + a", {"a": 2.0}),
        ("a - 2*b + a", {"a": 2.0, "b": -2.0}),
        ("house - face + 0*trans_x", {"house": 1.0, "face": -1.0}),
        ("+-+-a", {"a": 1.0}),
        ("a*-2", {"a": -2.0}),
        ("a/-4", {"a": -0.25}),
        ("3*a/2", {"a": 1.5}),
        ("2*3*a", {"a": 6.0}),
        ("1e-3*a + 2.5E+2*b - .5*c + 4.*d", {"a": 1e-3, "b": 250.0, "c": -0.5, "d": 4.0}),
        ("face_derivative - trans_x", {"face_derivative": 1.0, "trans_x": -1.0}),
        ("cosine00 + constant", {"cosine00": 1.0, "constant": 1.0}),
        ("a.b - _c1", {"a.b": 1.0, "_c1": -1.0}),
        ("`face-neutral` - `my cond`", {"face-neutral": 1.0, "my cond": -1.0}),
        ("`2back` - `0back`", {"2back": 1.0, "0back": -1.0}),
        ("`a*b` + `(x)`", {"a*b": 1.0, "(x)": 1.0}),
        ("face + `face`", {"face": 2.0}),
        ("  \tface\n-house  ", {"face": 1.0, "house": -1.0}),
        ("((((a))))", {"a": 1.0}),
        ("(a + 1) - 1", {"a": 1.0}),
    ],
)
def test_parse_expression_valid(expression: str, expected: dict[str, float]) -> None:
    weights = parse_expression(expression)
    assert list(weights) == list(expected)
    assert weights == pytest.approx(expected, rel=1e-15)
    assert all(type(weight) is float for weight in weights.values())


def test_names_keep_order_of_first_appearance() -> None:
    assert list(parse_expression("c - a + b - 2*c + a*3")) == ["c", "a", "b"]


def test_long_sums_and_sign_chains_do_not_recurse() -> None:
    assert parse_expression(" + ".join(["a"] * 3000)) == {"a": 3000.0}
    assert parse_expression("-" * 5001 + "a") == {"a": -1.0}


# --------------------------------------------------------------------------- invalid expressions


def _message(expression: str) -> str:
    with pytest.raises(ContrastError) as info:
        parse_expression(expression)
    return str(info.value)


def test_syntax_error_names_token_position_expression_and_caret() -> None:
    message = _message("face - )")
    first, shown, caret = message.splitlines()
    assert first == "unexpected ')' at position 7 in 'face - )'"
    assert shown.strip() == "face - )"
    assert caret.index("^") - shown.index("f") == 7


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("face*house", "non-linear product of two column terms: '*' at position 4"),
        ("(a + b)*(a - b)", "non-linear product of two column terms: '*' at position 7"),
        ("1/face", "non-linear division by a column term: '/' at position 1"),
        ("a/(b - 1)", "non-linear division by a column term: '/' at position 1"),
        ("face/0", "division by zero: '/' at position 4"),
        ("face/(2 - 2)", "division by zero: '/' at position 4"),
        ("3", "names no design column in '3'"),
        ("2*(3 - 1)", "names no design column"),
        ("face + 1", "constant term 1 not allowed"),
        ("(face - 2)*3", "constant term -6 not allowed"),
        ("a - a", "all contrast weights cancel to zero in 'a - a'"),
        ("0*a", "cancel to zero"),
        ("", "empty contrast expression"),
        ("   ", "empty contrast expression"),
        ("face house", "unexpected name 'house' at position 5"),
        ("face 2", "unexpected number '2' at position 5"),
        ("a +", "unexpected end of expression at position 3"),
        ("()", "unexpected ')' at position 1"),
        ("(a))", "unexpected ')' at position 3"),
        ("(face", "unclosed '(' at position 0"),
        ("a*(b + (c", "unclosed '(' at position 7"),
        ("a # b", "unexpected character '#' at position 2"),
        ("a ** 2", "unexpected '*' at position 3"),
        ("a = b", "unexpected character '=' at position 2"),
        ("face\u00e9", "unexpected character 'é' at position 4"),
        ("`abc", "unexpected empty or unclosed backtick name at position 0"),
        ("a + ``", "unexpected empty or unclosed backtick name at position 4"),
        ("2face", "malformed number '2face'"),
        ("1e*a", "malformed number '1e' "),
        ("1.5.3*a", "malformed number '1.5.3'"),
        ("1e400*a", "number '1e400' out of range"),
        ("1e300*1e300*a", "overflow"),
        ("a/1e-320", "overflow"),
        ("__import__('os').system('true')", 'unexpected character "\'" at position 11'),
        ("__import__(os)", "unexpected '(' at position 10"),
        ("(" * 5000 + "a" + ")" * 5000, "parentheses nested deeper than 100"),
    ],
)
def test_parse_expression_invalid(expression: str, fragment: str) -> None:
    assert fragment in _message(expression)


def test_caret_is_left_out_for_unprintable_expressions() -> None:
    message = _message("a\t#")
    assert message == "unexpected character '#' at position 2 in 'a\\t#'"


def test_module_never_evaluates_text() -> None:
    tree = ast.parse(inspect.getsource(contrasts))
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"eval", "exec", "compile", "__import__"}
    assert "literal_eval" not in inspect.getsource(contrasts)


# --------------------------------------------------------------------------- --contrast option


def test_parse_contrast_option() -> None:
    spec = parse_contrast_option("faceVsHouse=face - house")
    assert spec == ContrastSpec("faceVsHouse", "face - house", {"face": 1.0, "house": -1.0})
    spaced = parse_contrast_option("  DSt_minus_SSt =  DSt - SSt ")
    assert (spaced.name, spaced.expression) == ("DSt_minus_SSt", "DSt - SSt")
    quoted = parse_contrast_option("eq=`a=b` + c")
    assert quoted.weights == {"a=b": 1.0, "c": 1.0}


@pytest.mark.parametrize("text", ["face - house", "=face", "   = face", ""])
def test_parse_contrast_option_shows_expected_form(text: str) -> None:
    with pytest.raises(ContrastError) as info:
        parse_contrast_option(text)
    message = str(info.value)
    assert '--contrast NAME=EXPRESSION, e.g. --contrast "faceVsHouse=face - house"' in message
    assert repr(text) in message


def test_parse_contrast_option_reports_name_and_expression_errors() -> None:
    with pytest.raises(ContrastError, match=r"^contrast 'bad': non-linear product"):
        parse_contrast_option("bad=a*b")
    with pytest.raises(ContrastError, match="no ASCII letter or digit"):
        parse_contrast_option("+-+=a")
    with pytest.raises(ContrastError, match="unexpected character '='"):
        parse_contrast_option("x=a=b")


# --------------------------------------------------------------------------- weights over columns


COLUMNS = ["face", "house", "face_derivative", "trans_x", "cosine00", "constant"]


def test_weights_vector_places_weights_in_column_order() -> None:
    vector = weights_vector(parse_expression("0.5*house - face + 2*cosine00"), COLUMNS)
    assert vector.dtype == np.float64
    assert vector.shape == (6,)
    np.testing.assert_array_equal(vector, [-1.0, 0.5, 0.0, 0.0, 2.0, 0.0])
    np.testing.assert_array_equal(
        weights_vector({"face": 1.0}, pd.Index(COLUMNS)), [1, 0, 0, 0, 0, 0]
    )


def test_weights_vector_lists_missing_and_available_columns() -> None:
    weights = {"face": 1.0, "cat": -1.0, "dog": 1.0}
    assert missing_columns(weights, COLUMNS) == ["cat", "dog"]
    assert missing_columns({"face": 1.0}, COLUMNS) == []
    with pytest.raises(ContrastError) as info:
        weights_vector(weights, COLUMNS)
    message = str(info.value)
    assert "not in the design: 'cat', 'dog'" in message
    assert "available columns: " + ", ".join(map(repr, COLUMNS)) in message


def test_weights_vector_refuses_repeated_columns() -> None:
    with pytest.raises(ContrastError, match="must be unique"):
        weights_vector({"face": 1.0}, ["face", "house", "face"])


# --------------------------------------------------------------------------- BIDS labels


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("DSt_minus_SSt", "dStMinusSSt"),
        ("face", "face"),
        ("faceVsHouse", "faceVsHouse"),
        ("face - house", "faceHouse"),
        ("Face_2back", "face2back"),
        ("<img src=x onerror=alert(1)>", "imgSrcXOnerrorAlert1"),
        ("effects_of_interest", "effectsOfInterest"),
        ("__a__b__", "aB"),
        ("2back-0back", "2back0back"),
        ("visage\u00e9t\u00e9", "visageT"),
        ("../../etc/passwd", "etcPasswd"),
    ],
)
def test_bids_label(name: str, label: str) -> None:
    assert bids_label(name) == label


@pytest.mark.parametrize("name", ["", "   ", "_-_", "\u00e9\u00e8"])
def test_bids_label_refuses_names_without_letters_or_digits(name: str) -> None:
    with pytest.raises(ContrastError, match="no ASCII letter or digit"):
        bids_label(name)


def test_unique_labels() -> None:
    assert unique_labels(["DSt_minus_SSt", "face", "face - house"]) == {
        "DSt_minus_SSt": "dStMinusSSt",
        "face": "face",
        "face - house": "faceHouse",
    }
    with pytest.raises(ContrastError) as info:
        unique_labels(["face", "face_house", "face - house"])
    assert "'face_house' and 'face - house' both give the BIDS label 'faceHouse'" in str(
        info.value
    )
    with pytest.raises(ContrastError, match="'face' is given more than once"):
        unique_labels(["face", "house", "face"])


# --------------------------------------------------------------------------- properties

POOL = ["face", "house", "face_derivative", "trans_x", "a.b", "face-neutral", "my cond", "2back"]


def _leaf(name: str) -> tuple[str, dict[str, float]]:
    return (name if PLAIN_NAME.fullmatch(name) else f"`{name}`"), {name: 1.0}


COEFFICIENT_TEXTS = st.one_of(
    st.integers(1, 50).map(str),
    st.floats(1e-3, 1e3).flatmap(
        lambda value: st.sampled_from([repr(value), f"{value:.6e}", f"{value:.4g}"])
    ),
)


def _sum(parts: tuple) -> tuple[str, dict[str, float]]:
    (left_text, left), (right_text, right), operator, bracket = parts
    sign = 1.0 if operator == "+" else -1.0
    right_shown = f"({right_text})" if bracket or operator == "-" else right_text
    weights = dict(left)
    for name, weight in right.items():
        weights[name] = weights.get(name, 0.0) + sign * weight
    return f"{left_text} {operator} {right_shown}", weights


def _scale(parts: tuple) -> tuple[str, dict[str, float]]:
    coefficient_text, (text, weights), form = parts
    value = float(coefficient_text)
    if form == "divide":
        return f"({text})/{coefficient_text}", {n: w / value for n, w in weights.items()}
    shown = f"{coefficient_text}*({text})" if form == "left" else f"({text})*{coefficient_text}"
    return shown, {n: w * value for n, w in weights.items()}


def _negate(part: tuple) -> tuple[str, dict[str, float]]:
    text, weights = part
    return f"-({text})", {n: -w for n, w in weights.items()}


LINEAR_EXPRESSIONS = st.recursive(
    st.sampled_from(POOL).map(_leaf),
    lambda children: st.one_of(
        st.tuples(children, children, st.sampled_from("+-"), st.booleans()).map(_sum),
        st.tuples(COEFFICIENT_TEXTS, children, st.sampled_from(["left", "right", "divide"])).map(
            _scale
        ),
        children.map(_negate),
        children.map(lambda part: (f"({part[0]})", part[1])),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(LINEAR_EXPRESSIONS)
def test_rendered_linear_combinations_parse_back(case: tuple[str, dict[str, float]]) -> None:
    text, built = case
    expected = {name: weight for name, weight in built.items() if weight != 0.0}
    if not expected:
        with pytest.raises(ContrastError, match="cancel to zero"):
            parse_expression(text)
        return
    weights = parse_expression(text)
    assert list(weights) == list(expected)
    scale = max(abs(weight) for weight in built.values())
    for name, weight in expected.items():
        assert weights[name] == pytest.approx(weight, rel=1e-12, abs=1e-12 * scale)


NAMED_WEIGHTS = st.dictionaries(
    st.sampled_from(POOL),
    st.floats(-1e6, 1e6, allow_nan=False).filter(lambda weight: weight != 0.0),
    min_size=1,
)


@settings(max_examples=300, deadline=None)
@given(NAMED_WEIGHTS)
def test_weights_text_parses_back_to_the_same_weights(weights: dict[str, float]) -> None:
    assert parse_expression(weights_text(weights)) == weights


def test_weights_text_reads_as_written_by_hand():
    assert weights_text({"face": 1.0, "house": -1.0}) == "face - house"
    assert weights_text({"a": -0.5, "face-neutral": 2.0}) == "-0.5*a + 2*`face-neutral`"
    assert weights_text({"a": 0.1, "b": 1 / 3}) == "0.1*a + 0.3333333333333333*b"


GRAMMAR_TEXT = st.text(alphabet="ab_.019eE+-*/() `\t=#", max_size=40)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), GRAMMAR_TEXT))
def test_parser_raises_only_contrast_errors(text: str) -> None:
    try:
        weights = parse_expression(text)
    except ContrastError:
        return
    assert weights
    assert all(math.isfinite(weight) and weight != 0.0 for weight in weights.values())


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), GRAMMAR_TEXT))
def test_contrast_option_raises_only_contrast_errors(text: str) -> None:
    try:
        spec = parse_contrast_option(text)
    except ContrastError:
        return
    assert LABEL.match(bids_label(spec.name))
    assert spec.weights == parse_expression(spec.expression)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_bids_label_is_alphanumeric_and_keeps_every_letter_and_digit(name: str) -> None:
    kept = "".join(re.findall(r"[A-Za-z0-9]", name))
    try:
        label = bids_label(name)
    except ContrastError:
        assert kept == ""
        return
    assert LABEL.match(label)
    assert label.lower() == kept.lower()


def test_f_contrast_option_parses_rows():
    from bids_glm.design.contrast_options import parse_f_contrast_option

    spec = parse_f_contrast_option("effectsOfInterest = face; house - scrambled ;2*cat")
    assert spec.name == "effectsOfInterest"
    assert spec.rows == ({"face": 1.0}, {"house": 1.0, "scrambled": -1.0}, {"cat": 2.0})
    with pytest.raises(ContrastError, match="row 2"):
        parse_f_contrast_option("x=face; ; house")
    with pytest.raises(ContrastError, match="expected --f-contrast NAME=ROW"):
        parse_f_contrast_option("face; house")
