//! Fiber's snake_case transaction JSON rewritten as JoyID and CCC write it.

use fiber_funding::json::Value;

/// camelCase keys (and `depGroup`), as JoyID and CCC write them.
pub fn camelize(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let mut camel = String::new();
                    let mut upper = false;
                    for c in key.chars() {
                        if c == '_' {
                            upper = true;
                        } else if upper {
                            camel.extend(c.to_uppercase());
                            upper = false;
                        } else {
                            camel.push(c);
                        }
                    }
                    let value = if value.as_str() == Some("dep_group") {
                        Value::from("depGroup")
                    } else {
                        camelize(value)
                    };
                    (camel, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(camelize).collect()),
        other => other.clone(),
    }
}
