export * from './binding'
