// swift-tools-version: 6.0
import PackageDescription

/// One settings array for every target: Swift 6 language mode (strict concurrency) everywhere.
let swiftSettings: [SwiftSetting] = [
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
  name: "ckptd",
  platforms: [.macOS(.v14)],
  products: [
    .executable(name: "ckptd", targets: ["ckptd"]),
    .library(name: "CheckpointFormats", targets: ["CheckpointFormats"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
    .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    .package(url: "https://github.com/pointfreeco/swift-clocks", from: "1.1.1"),
  ],
  targets: [
    .systemLibrary(
      name: "CInotifyTools",
      providers: [.apt(["libinotifytools0-dev"])]
    ),
    .systemLibrary(name: "CLinux"),
    .systemLibrary(
      name: "CZlib",
      providers: [.apt(["zlib1g-dev"])]
    ),
    .target(
      name: "CheckpointFormats",
      dependencies: [
        "CLinux",
        "CZlib",
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "SystemPackage", package: "swift-system"),
      ],
      swiftSettings: swiftSettings
    ),
    .target(
      name: "CheckpointConversion",
      dependencies: [
        "CheckpointFormats", "CLinux",
        .product(name: "SystemPackage", package: "swift-system"),
      ],
      swiftSettings: swiftSettings
    ),
    .target(
      name: "CheckpointDaemon",
      dependencies: [
        "CheckpointFormats",
        "CheckpointConversion",
        "CInotifyTools",
        "CLinux",
        .product(name: "TOMLKit", package: "TOMLKit"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "Subprocess", package: "swift-subprocess"),
        .product(name: "SystemPackage", package: "swift-system"),
      ],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "ckptd",
      dependencies: [
        "CheckpointFormats",
        "CheckpointConversion",
        "CheckpointDaemon",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "CheckpointFormatsTests",
      dependencies: ["CheckpointFormats"],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "CheckpointConversionTests",
      dependencies: ["CheckpointFormats", "CheckpointConversion"],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "CheckpointDaemonTests",
      dependencies: [
        "CheckpointFormats", "CheckpointConversion", "CheckpointDaemon",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Clocks", package: "swift-clocks"),
        .product(name: "SystemPackage", package: "swift-system"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "ckptdTests",
      dependencies: ["ckptd", "CheckpointFormats", "CheckpointConversion"],
      swiftSettings: swiftSettings
    ),
  ],
  swiftLanguageModes: [.v6]
)
