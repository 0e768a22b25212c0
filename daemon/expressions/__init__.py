"""The expression language of flows: Pebble's syntax, as Kestra uses it, in a sandbox.

Our own parser and evaluator (docs/decisions/0001-expression-language.md): templates
see JSON-like data only, never Python objects, and every render runs within budgets
of steps, time, output size and render() depth.
"""

from .context import Limits, RenderContext
from .errors import BudgetExceeded, ExpressionError, ExpressionSyntaxError
from .template import Template, has_expression, parse, render
from .values import truthy

__all__ = [
    "BudgetExceeded",
    "ExpressionError",
    "ExpressionSyntaxError",
    "Limits",
    "RenderContext",
    "Template",
    "has_expression",
    "parse",
    "render",
    "truthy",
]
