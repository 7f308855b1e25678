/** Types for get-helm.mjs (imported by test/k8s). */
export declare const HELM_PACKAGE: string;
export declare function helmCachePath(): string;
export declare function ensureHelm(): string;
