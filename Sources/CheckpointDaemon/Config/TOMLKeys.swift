import TOMLKit

/// Typed, checked access to one TOML table's keys; every mismatch is a `ConfigKeyError` that names the key.
struct TOMLKeys {
  let table: TOMLTable

  /// Fails on the first key (in sorted order) that is not in `allowed`.
  func rejectUnknown(allowed: Set<String>) throws {
    for key in table.keys.sorted() where !allowed.contains(key) {
      let known = allowed.sorted().joined(separator: ", ")
      throw ConfigKeyError("unknown key \"\(key)\" (known keys: \(known))")
    }
  }

  func string(_ key: String) throws -> String? {
    guard let value = table[key] else { return nil }
    guard let text = value.string else { throw typeError(key, value, "a string") }
    return text
  }

  func bool(_ key: String) throws -> Bool? {
    guard let value = table[key] else { return nil }
    guard let flag = value.bool else { throw typeError(key, value, "true or false") }
    return flag
  }

  func int(_ key: String) throws -> Int? {
    guard let value = table[key] else { return nil }
    guard let number = value.int else { throw typeError(key, value, "an integer") }
    return number
  }

  /// An integer or a float.
  func number(_ key: String) throws -> Double? {
    guard let value = table[key] else { return nil }
    if let number = value.int { return Double(number) }
    guard let number = value.double else { throw typeError(key, value, "a number") }
    return number
  }

  func stringArray(_ key: String) throws -> [String]? {
    guard let value = table[key] else { return nil }
    guard let array = value.array else { throw typeError(key, value, "an array of strings") }
    var result: [String] = []
    for element in array {
      guard let text = element.string else { throw typeError(key, value, "an array of strings") }
      result.append(text)
    }
    return result
  }

  private func typeError(_ key: String, _ value: any TOMLValueConvertible, _ expected: String) -> ConfigKeyError {
    ConfigKeyError("\(key) must be \(expected), not a TOML \(value.type)")
  }
}
