//! The lexer and recursive-descent parser of requirement expressions, and their limits.

use super::error::RequirementError;
use super::name::Scope;
use super::tree::Node;

/// Maximum length of a requirement expression, in bytes.
const MAX_EXPR_LEN: usize = 4096;
/// Maximum parenthesis nesting depth of a requirement expression.
const MAX_DEPTH: usize = 32;
/// Maximum number of scopes in a requirement expression.
const MAX_EXPR_SCOPES: usize = 256;

/// Parses a requirement expression into its tree; the parser behind [`Requirement::parse`]
/// (see there for the grammar and the errors).
///
/// [`Requirement::parse`]: super::Requirement::parse
pub(super) fn parse_expression(expr: &str) -> Result<Node, RequirementError> {
    if expr.len() > MAX_EXPR_LEN {
        return Err(RequirementError::new(
            MAX_EXPR_LEN,
            format!(
                "the expression is {} bytes long (maximum {MAX_EXPR_LEN})",
                expr.len()
            ),
        ));
    }
    if expr.bytes().all(|b| b.is_ascii_whitespace()) {
        return Err(RequirementError::new(0, "the expression is empty"));
    }
    let mut parser = Parser::new(expr);
    let node = parser.parse_or()?;
    let token = parser.next()?;
    match token.kind {
        Tok::End => Ok(node),
        Tok::RParen => Err(RequirementError::new(token.pos, "unmatched ')'")),
        // `And`/`Or` are always consumed by the loops above, so this is a scope or '('.
        _ => Err(missing_operator(&token)),
    }
}

/// A token of a requirement expression.
#[derive(Debug)]
struct Token {
    kind: Tok,
    /// Byte offset of the token in the expression.
    pos: usize,
}

/// The kinds of tokens.
#[derive(Debug)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Scope(Scope),
    End,
}

impl Tok {
    /// How the token is named in error messages.
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".to_owned(),
            Tok::RParen => "')'".to_owned(),
            Tok::And => "operator 'and'".to_owned(),
            Tok::Or => "operator 'or'".to_owned(),
            Tok::Scope(scope) => format!("scope {:?}", scope.as_str()),
            Tok::End => "the end of the expression".to_owned(),
        }
    }
}

/// The error for two operands with no operator between them; `token` is the second operand.
fn missing_operator(token: &Token) -> RequirementError {
    RequirementError::new(
        token.pos,
        format!(
            "expected 'and' or 'or' before {}, found no operator",
            token.kind.describe()
        ),
    )
}

/// Lazy lexer and recursive-descent parser for requirement expressions.
///
/// Recursion only happens through parentheses, which are limited to [`MAX_DEPTH`] levels, so
/// the stack use is bounded whatever the input.
struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the lexer.
    pos: usize,
    /// One token of lookahead.
    peeked: Option<Token>,
    /// Number of currently open parentheses.
    depth: usize,
    /// Number of scopes lexed so far.
    scopes: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Parser<'a> {
        Parser {
            src,
            pos: 0,
            peeked: None,
            depth: 0,
            scopes: 0,
        }
    }

    /// Returns the next token without consuming it.
    fn peek(&mut self) -> Result<&Token, RequirementError> {
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lex()?,
        };
        Ok(self.peeked.insert(token))
    }

    /// Consumes and returns the next token.
    fn next(&mut self) -> Result<Token, RequirementError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lex(),
        }
    }

    /// Reads one token from the source.
    fn lex(&mut self) -> Result<Token, RequirementError> {
        let bytes = self.src.as_bytes();
        while bytes.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
        let start = self.pos;
        let kind = match bytes.get(start) {
            None => Tok::End,
            Some(b'(') => {
                self.pos += 1;
                Tok::LParen
            }
            Some(b')') => {
                self.pos += 1;
                Tok::RParen
            }
            Some(_) => {
                let end = bytes[start..]
                    .iter()
                    .position(|&b| b.is_ascii_whitespace() || b == b'(' || b == b')')
                    .map_or(bytes.len(), |len| start + len);
                self.pos = end;
                // `start` and `end` are each next to an ASCII delimiter or at an end of the
                // string, so they are char boundaries.
                let word = &self.src[start..end];
                if word.eq_ignore_ascii_case("and") {
                    Tok::And
                } else if word.eq_ignore_ascii_case("or") {
                    Tok::Or
                } else {
                    self.scopes += 1;
                    if self.scopes > MAX_EXPR_SCOPES {
                        return Err(RequirementError::new(
                            start,
                            format!("too many scopes (maximum {MAX_EXPR_SCOPES})"),
                        ));
                    }
                    let scope = Scope::parse(word)
                        .map_err(|e| RequirementError::new(start, e.to_string()))?;
                    Tok::Scope(scope)
                }
            }
        };
        Ok(Token { kind, pos: start })
    }

    /// `expr = and-expr *( "or" and-expr )`
    fn parse_or(&mut self) -> Result<Node, RequirementError> {
        let mut items = Vec::new();
        loop {
            match self.parse_and()? {
                Node::Or(nested) => items.extend(nested),
                other => items.push(other),
            }
            if !matches!(self.peek()?.kind, Tok::Or) {
                break;
            }
            self.next()?;
        }
        Ok(combine(items, Node::Or))
    }

    /// `and-expr = primary *( "and" primary )`
    fn parse_and(&mut self) -> Result<Node, RequirementError> {
        let mut items = Vec::new();
        loop {
            match self.parse_primary()? {
                Node::And(nested) => items.extend(nested),
                other => items.push(other),
            }
            if !matches!(self.peek()?.kind, Tok::And) {
                break;
            }
            self.next()?;
        }
        Ok(combine(items, Node::And))
    }

    /// `primary = scope / "(" expr ")"`
    fn parse_primary(&mut self) -> Result<Node, RequirementError> {
        let token = self.next()?;
        match token.kind {
            Tok::Scope(scope) => Ok(Node::Scope(scope)),
            Tok::LParen => {
                if self.depth == MAX_DEPTH {
                    return Err(RequirementError::new(
                        token.pos,
                        format!("parentheses are nested more than {MAX_DEPTH} levels deep"),
                    ));
                }
                if matches!(self.peek()?.kind, Tok::RParen) {
                    return Err(RequirementError::new(token.pos, "empty parentheses '()'"));
                }
                self.depth += 1;
                let inner = self.parse_or()?;
                self.depth -= 1;
                let close = self.next()?;
                match close.kind {
                    Tok::RParen => Ok(inner),
                    Tok::End => Err(RequirementError::new(token.pos, "unclosed '('")),
                    _ => Err(missing_operator(&close)),
                }
            }
            kind => Err(RequirementError::new(
                token.pos,
                format!("expected a scope or '(', found {}", kind.describe()),
            )),
        }
    }
}

/// Builds an operator node, or returns the only operand.
pub(super) fn combine(mut items: Vec<Node>, make: fn(Vec<Node>) -> Node) -> Node {
    if items.len() == 1 {
        items.swap_remove(0)
    } else {
        make(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Requirement;
    use crate::scope::test_support::{expression_like_string, leaf, req, req_err};
    use proptest::prelude::*;

    /// The tree `expr` parses to.
    fn tree(expr: &str) -> Node {
        parse_expression(expr).unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            tree("a:a or b:b and c:c"),
            Node::Or(vec![leaf("a:a"), Node::And(vec![leaf("b:b"), leaf("c:c")])])
        );
        assert_eq!(
            tree("a:a and b:b or c:c"),
            Node::Or(vec![Node::And(vec![leaf("a:a"), leaf("b:b")]), leaf("c:c")])
        );
    }

    #[test]
    fn operators_are_case_insensitive() {
        assert_eq!(req("a:a AND b:b Or c:c"), req("a:a and b:b or c:c"));
        assert_eq!(req("a:a aNd b:b"), req("a:a and b:b"));
    }

    #[test]
    fn chains_are_flattened_and_redundant_parentheses_dropped() {
        let flat = Node::And(vec![leaf("a:a"), leaf("b:b"), leaf("c:c")]);
        assert_eq!(tree("a:a and b:b and c:c"), flat);
        assert_eq!(tree("(a:a and b:b) and c:c"), flat);
        assert_eq!(tree("a:a and (b:b and (c:c))"), flat);
        assert_eq!(tree("((a:a))"), leaf("a:a"));
    }

    #[test]
    fn nested_parentheses_group_operands() {
        assert_eq!(
            tree("workspaces:read and (templates:use or (templates:* and x:y))"),
            Node::And(vec![
                leaf("workspaces:read"),
                Node::Or(vec![
                    leaf("templates:use"),
                    Node::And(vec![leaf("templates:*"), leaf("x:y")]),
                ]),
            ])
        );
    }

    #[test]
    fn parentheses_may_touch_words_and_any_ascii_whitespace_separates() {
        assert_eq!(req("(a:b or c:d)and(e:f)"), req("(a:b or c:d) and e:f"));
        assert_eq!(req("\ta:b\n AND\r\nc:d  "), req("a:b and c:d"));
    }

    #[test]
    fn built_requirements_keep_the_limits_of_parse() {
        let many = vec![req("a:b"); MAX_EXPR_SCOPES + 1];
        assert!(Requirement::any(many[..MAX_EXPR_SCOPES].to_vec()).is_ok());
        let err = Requirement::any(many).unwrap_err();
        assert!(err.message.contains("too many scopes"), "{err}");
        let mut deep = req("a:a");
        for _ in 0..MAX_DEPTH {
            deep = Requirement::all([req("b:b"), Requirement::any([req("c:c"), deep]).unwrap()])
                .unwrap();
        }
        assert!(
            Requirement::all([req("b:b"), Requirement::any([req("c:c"), deep]).unwrap()]).is_err()
        );
    }

    #[test]
    fn requirement_errors_carry_the_expected_position() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty"),
            (" \t\n ", 0, "empty"),
            ("and a:b", 0, "found operator 'and'"),
            ("OR a:b", 0, "found operator 'or'"),
            ("a:b and", 7, "found the end of the expression"),
            ("a:b or  ", 8, "found the end of the expression"),
            ("a:b and or c:d", 8, "found operator 'or'"),
            ("a:b or and c:d", 7, "found operator 'and'"),
            ("a:b c:d", 4, "expected 'and' or 'or'"),
            ("a:b (c:d)", 4, "expected 'and' or 'or' before '('"),
            ("(a:b) c:d", 6, "expected 'and' or 'or'"),
            ("(a:b c:d)", 5, "expected 'and' or 'or'"),
            ("(a:b", 0, "unclosed '('"),
            ("a:b and ((c:d)", 8, "unclosed '('"),
            ("a:b)", 3, "unmatched ')'"),
            ("(a:b))", 5, "unmatched ')'"),
            (")", 0, "found ')'"),
            ("(a:b and)", 8, "found ')'"),
            ("()", 0, "empty parentheses"),
            ("a:b or ( )", 7, "empty parentheses"),
            ("a:b and Foo:bar", 8, "character 'F'"),
            ("a:b & c:d", 4, "character '&'"),
            ("a:b && c:d", 4, "character '&'"),
            ("a:b and é:x", 8, "character 'é'"),
            ("a:b or\u{a0}c:d", 4, "character '\\u{a0}'"),
            ("a:b or c", 7, "no ':'"),
        ];
        for &(expr, position, fragment) in cases {
            let err = req_err(expr);
            assert_eq!(err.position, position, "{expr:?}: {err}");
            assert!(
                err.message.contains(fragment),
                "{expr:?}: message {:?} should contain {fragment:?}",
                err.message
            );
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_rejected() {
        let nested = |depth: usize| format!("{}a:b{}", "(".repeat(depth), ")".repeat(depth));
        assert_eq!(tree(&nested(MAX_DEPTH)), leaf("a:b"));
        let err = req_err(&nested(MAX_DEPTH + 1));
        assert_eq!(err.position, MAX_DEPTH);
        assert!(err.message.contains("nested"), "{err}");
        // Far deeper input still fails cleanly rather than overflowing the stack.
        let err = req_err(&"(".repeat(4000));
        assert_eq!(err.position, MAX_DEPTH);
    }

    #[test]
    fn too_many_scopes_are_rejected() {
        let expr = |n: usize| vec!["a:b"; n].join(" or ");
        assert!(Requirement::parse(&expr(MAX_EXPR_SCOPES)).is_ok());
        let err = req_err(&expr(MAX_EXPR_SCOPES + 1));
        assert_eq!(err.position, MAX_EXPR_SCOPES * "a:b or ".len());
        assert!(err.message.contains("too many scopes"), "{err}");
    }

    #[test]
    fn overlong_expressions_are_rejected() {
        let ok = format!("{}:b", "a".repeat(MAX_EXPR_LEN - 2));
        assert_eq!(ok.len(), MAX_EXPR_LEN);
        // Within the length limit, so the error comes from the scope itself.
        assert!(req_err(&ok).message.contains("maximum 128"));
        let err = req_err(&format!("{ok} "));
        assert_eq!(err.position, MAX_EXPR_LEN);
        assert!(err.message.contains("4097 bytes"), "{err}");
    }

    // --- Properties --------------------------------------------------------------------------

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..600)
        ) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = Scope::parse(&s);
            let _ = Requirement::parse(&s);
        }

        #[test]
        fn requirement_parse_never_panics_on_arbitrary_strings(s in any::<String>()) {
            let _ = Requirement::parse(&s);
        }

        #[test]
        fn requirement_parse_never_panics_on_expression_like_strings(
            s in expression_like_string()
        ) {
            if let Ok(r) = Requirement::parse(&s) {
                // Whatever parses must print canonically and re-parse to the same value.
                prop_assert_eq!(Requirement::parse(&r.to_string()), Ok(r));
            }
        }
    }
}
